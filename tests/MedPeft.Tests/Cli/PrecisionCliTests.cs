using System.Text.Json.Nodes;
using MedPeft.Data.Synthetic;
using MedPeft.Experiments;
using MedPeft.Models.Blip;
using static TorchSharp.torch;

namespace MedPeft.Tests.Cli;

/// <summary>`--dtype` and `--gradient-checkpointing` through the real CLI and study files.</summary>
public class PrecisionCliTests
{
    [Fact]
    public void Train_in_bf16_with_checkpointing_saves_a_bf16_model_that_eval_scores()
    {
        var root = Directory.CreateTempSubdirectory("medpeft-bf16-").FullName;
        var (model, data) = TinyBlipFolder.Create(root,
            SyntheticBenchOptions.Quick with { TrainImages = 20, ValidationImages = 5, TestImages = 5, PretrainImages = 1, ReportTrain = 1, ReportVal = 1, ReportTest = 1 }, seed: 3);
        var outDir = Path.Combine(root, "run");
        var r = CliRunner.Run("train", "--model", model, "--data", data, "--strategy", "ln", "--dtype", "bf16", "--gradient-checkpointing",
            "--max-steps", "3", "--batch-size", "8", "--out", outDir, "--threads", "2");
        Assert.True(r.ExitCode == 0, r.StdErr + r.StdOut);
        Assert.Equal(3, JsonNode.Parse(File.ReadAllText(Path.Combine(outDir, "train_summary.json")))!["steps"]!.GetValue<int>());
        using (var saved = BlipModelFolder.Load(Path.Combine(outDir, "model"), CPU, ScalarType.BFloat16))
            Assert.All(saved.parameters(), p => Assert.Equal(ScalarType.BFloat16, p.dtype));
        var e = CliRunner.Run("eval", "--model", Path.Combine(outDir, "model"), "--data", data, "--split", "test", "--dtype", "bf16", "--json", "--threads", "2");
        Assert.True(e.ExitCode == 0, e.StdErr + e.StdOut);
        Assert.True(JsonNode.Parse(e.StdOut)!["overall_acc"] is not null);

        var bad = CliRunner.Run("train", "--model", model, "--data", data, "--dtype", "int8", "--out", outDir);
        Assert.NotEqual(0, bad.ExitCode);
        Assert.Contains("--dtype int8: expected auto, bf16, fp16, fp32", bad.StdErr + bad.StdOut);
    }

    [Fact]
    public void Study_models_take_dtype_and_gradient_checkpointing_and_key_them()
    {
        const string head = "datasets: [{name: d, format: slake, dir: /data}]\nstrategies: [ln]\nmodels:\n";
        var plain = StudyPlan.Expand(StudyFile.Parse(head + "  - {path: /ckpt}\n", "s.yaml")).Runs.Single();
        var half = StudyPlan.Expand(StudyFile.Parse(head + "  - {path: /ckpt, dtype: bf16, gradient_checkpointing: true}\n", "s.yaml")).Runs.Single();
        Assert.Equal("auto", plain.Model.DType);
        Assert.Equal("bf16", half.Model.DType);
        Assert.True(half.Model.GradientCheckpointing);
        Assert.NotEqual(plain.Key, half.Key);
        var o = half.Model.Apply(new MedPeft.Training.TrainOptions());
        Assert.Equal("bf16", o.DType);
        Assert.True(o.GradientCheckpointing);
        var e = Assert.Throws<MedPeftException>(() => StudyFile.Parse(head + "  - {path: /ckpt, dtype: int4}\n", "s.yaml"));
        Assert.Contains("\"int4\" is not one of auto, bf16, fp16, fp32", e.Message);
        e = Assert.Throws<MedPeftException>(() => StudyFile.Parse(head + "  - {preset: embedded, dtype: bf16}\n", "s.yaml"));
        Assert.Contains("checkpoint folders", e.Message);
    }
}
