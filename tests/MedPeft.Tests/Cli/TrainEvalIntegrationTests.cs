using System.Text.Json.Nodes;
using MedPeft.Data;
using MedPeft.Data.Synthetic;
using MedPeft.Models;
using MedPeft.Models.Blip;

namespace MedPeft.Tests.Cli;

/// <summary>`medpeft train` then `medpeft eval` through the real CLI on a small generated SLAKE-format set and a
/// small random BLIP model folder.</summary>
public class TrainEvalIntegrationTests
{
    static (string Model, string Data) Setup(string root) => TinyBlipFolder.Create(root,
        SyntheticBenchOptions.Quick with { TrainImages = 40, ValidationImages = 10, TestImages = 10, PretrainImages = 1, ReportTrain = 1, ReportVal = 1, ReportTest = 1 }, seed: 3);

    [Theory]
    [InlineData("ln", "LN_TUNING")]
    [InlineData("lora@text", "LORA")]
    public void Train_saves_model_adapter_and_log_then_eval_scores(string strategy, string peftType)
    {
        var root = Directory.CreateTempSubdirectory("medpeft-train-").FullName;
        var (model, data) = Setup(root);
        var outDir = Path.Combine(root, "run");
        var r = CliRunner.Run("train", "--model", model, "--data", data, "--format", "slake", "--strategy", strategy,
            "--max-steps", "6", "--batch-size", "8", "--eval-every", "3", "--out", outDir, "--threads", "2");
        Assert.True(r.ExitCode == 0, r.StdErr + r.StdOut);

        var summary = JsonNode.Parse(File.ReadAllText(Path.Combine(outDir, "train_summary.json")))!;
        Assert.Equal(6, summary["steps"]!.GetValue<int>());
        Assert.Equal(peftType, summary["adapter"]!.GetValue<string>());
        var log = File.ReadAllLines(Path.Combine(outDir, "log.jsonl")).Select(l => JsonNode.Parse(l)!).ToList();
        Assert.Equal(6, log.Last(l => l["loss"] is not null)["step"]!.GetValue<int>());
        Assert.Equal([3, 6], log.Where(l => l["validation"] is not null).Select(l => l["step"]!.GetValue<int>()));
        var adapterConfig = JsonNode.Parse(File.ReadAllText(Path.Combine(outDir, "adapter", "adapter_config.json")))!;
        Assert.Equal(peftType, adapterConfig["peft_type"]!.GetValue<string>());
        var adapterFile = new FileInfo(Path.Combine(outDir, "adapter", "adapter_model.safetensors"));
        Assert.InRange(adapterFile.Length, 1, 1_000_000);
        Assert.True(BlipModelFolder.IsModelFolder(Path.Combine(outDir, "model")));

        var preds = Path.Combine(root, "preds.jsonl");
        var e = CliRunner.Run("eval", "--model", Path.Combine(outDir, "model"), "--data", data, "--format", "slake", "--split", "test",
            "--predictions", preds, "--json", "--threads", "2");
        Assert.True(e.ExitCode == 0, e.StdErr + e.StdOut);
        var scores = JsonNode.Parse(e.StdOut)!;
        Assert.Equal(40, scores["closed"]!.GetValue<int>() + scores["open"]!.GetValue<int>());
        Assert.Equal(40, File.ReadAllLines(preds).Length);
        var rescored = CliRunner.Run("score", "vqa", preds, "--json");
        Assert.Equal(scores["overall_acc"]!.GetValue<double>(), JsonNode.Parse(rescored.StdOut)!["overall_acc"]!.GetValue<double>(), 9);
    }

    [Fact]
    public void An_ln_adapter_reloads_into_the_base_model_and_reproduces_the_trained_norms()
    {
        var root = Directory.CreateTempSubdirectory("medpeft-adapter-").FullName;
        var (model, data) = Setup(root);
        var outDir = Path.Combine(root, "run");
        var r = CliRunner.Run("train", "--model", model, "--data", data, "--strategy", "ln", "--max-steps", "4", "--batch-size", "8", "--out", outDir, "--threads", "2");
        Assert.True(r.ExitCode == 0, r.StdErr);
        using var trained = BlipModelFolder.Load(Path.Combine(outDir, "model"), TorchSharp.torch.CPU);
        using var base_ = BlipModelFolder.Load(model, TorchSharp.torch.CPU);
        MedPeft.Tuning.PeftAdapters.Load(base_, Path.Combine(outDir, "adapter"));
        var a = trained.state_dict(); var b = base_.state_dict();
        foreach (var (k, t) in a) Assert.True(t.eq(b[k]).all().item<bool>(), k);
    }
}

public class LoraOptionsIntegrationTests
{
    [Fact]
    public void Train_takes_lora_options_and_eval_takes_the_adapter()
    {
        var root = Directory.CreateTempSubdirectory("medpeft-lora-").FullName;
        var (model, data) = TinyBlipFolder.Create(root, SyntheticBenchOptions.Quick with { TrainImages = 30, ValidationImages = 5, TestImages = 10, PretrainImages = 1, ReportTrain = 1, ReportVal = 1, ReportTest = 1 }, seed: 5);
        var outDir = Path.Combine(root, "run");
        var r = CliRunner.Run("train", "--model", model, "--data", data, "--strategy", "lora@text_decoder", "--lora-r", "4", "--lora-alpha", "8",
            "--lora-targets", "query", "key", "value", "--max-steps", "3", "--batch-size", "8", "--out", outDir, "--threads", "2");
        Assert.True(r.ExitCode == 0, r.StdErr + r.StdOut);
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(outDir, "adapter", "adapter_config.json")))!;
        Assert.Equal(4, config["r"]!.GetValue<int>());
        Assert.Equal(8, config["lora_alpha"]!.GetValue<double>());
        // Scoped to one tower: PEFT applies target_modules to the whole model, so it is written as a full-match regex.
        Assert.Equal(@"(?:text_decoder\.).*\.(?:query|key|value)", config["target_modules"]!.GetValue<string>());
        var tensors = MedPeft.Models.Checkpoint.ReadSafetensors(Path.Combine(outDir, "adapter", "adapter_model.safetensors"));
        Assert.All(tensors.Keys, k => Assert.StartsWith("base_model.model.text_decoder.", k));
        Assert.All(tensors.Where(kv => kv.Key.EndsWith("lora_A.weight")), kv => Assert.Equal(4, kv.Value.shape[0]));

        var e = CliRunner.Run("eval", "--model", model, "--adapter", Path.Combine(outDir, "adapter"), "--data", data, "--json", "--threads", "2");
        Assert.True(e.ExitCode == 0, e.StdErr);
        var s = JsonNode.Parse(e.StdOut)!;
        Assert.Equal(40, s["closed"]!.GetValue<int>() + s["open"]!.GetValue<int>());
    }
}

public class ExtrinsicTrainIntegrationTests
{
    [Theory]
    [InlineData("IA3", "train", "--strategy", "ia3@text_decoder", "--ia3-targets", "key", "value", "output.dense")]
    [InlineData("PREFIX_TUNING", "train", "--strategy", "prefix@text_decoder", "--num-virtual-tokens", "4", "--encoder-hidden-size", "16")]
    [InlineData("PROMPT_TUNING", "train", "--strategy", "prompt", "--num-virtual-tokens", "5", "--prompt-init-text", "is there a lesion")]
    [InlineData("P_TUNING", "train", "--strategy", "ptuning-v1", "--num-virtual-tokens", "4", "--encoder-hidden-size", "16", "--encoder-reparameterization-type", "LSTM")]
    public void Train_writes_the_peft_adapter_and_eval_applies_it(string peftType, params string[] args)
    {
        var root = Directory.CreateTempSubdirectory("medpeft-ext-").FullName;
        var (model, data) = TinyBlipFolder.Create(root, SyntheticBenchOptions.Quick with { TrainImages = 30, ValidationImages = 5, TestImages = 10, PretrainImages = 1, ReportTrain = 1, ReportVal = 1, ReportTest = 1 }, seed: 5);
        var outDir = Path.Combine(root, "run");
        var r = CliRunner.Run([.. args, "--model", model, "--data", data, "--max-steps", "3", "--batch-size", "8", "--lr", "0.05", "--out", outDir, "--threads", "2"]);
        Assert.True(r.ExitCode == 0, r.StdErr + r.StdOut);
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(outDir, "adapter", "adapter_config.json")))!;
        Assert.Equal(peftType, config["peft_type"]!.GetValue<string>());
        if (peftType == "P_TUNING")
            Assert.Equal(("LSTM", 16, 4), (config["encoder_reparameterization_type"]!.GetValue<string>(), config["encoder_hidden_size"]!.GetValue<int>(), config["num_virtual_tokens"]!.GetValue<int>()));
        Assert.Equal(peftType, JsonNode.Parse(File.ReadAllText(Path.Combine(outDir, "train_summary.json")))!["adapter"]!.GetValue<string>());
        using (var saved = BlipModelFolder.Load(Path.Combine(outDir, "model"), TorchSharp.torch.CPU))
            Assert.DoesNotContain(saved.state_dict().Keys, k => k.Contains("ia3_l") || k.Contains("prompt_encoder"));   // model/ is a plain checkpoint

        var withAdapter = CliRunner.Run("eval", "--model", model, "--adapter", Path.Combine(outDir, "adapter"), "--data", data, "--json", "--threads", "2");
        Assert.True(withAdapter.ExitCode == 0, withAdapter.StdErr);
        var s = JsonNode.Parse(withAdapter.StdOut)!;
        Assert.Equal(40, s["closed"]!.GetValue<int>() + s["open"]!.GetValue<int>());
        if (peftType == "IA3")
        {
            // The merged model/ and base + adapter answer identically.
            var merged = CliRunner.Run("eval", "--model", Path.Combine(outDir, "model"), "--data", data, "--json", "--threads", "2");
            Assert.Equal(s["overall_acc"]!.GetValue<double>(), JsonNode.Parse(merged.StdOut)!["overall_acc"]!.GetValue<double>(), 9);
        }
    }
}
