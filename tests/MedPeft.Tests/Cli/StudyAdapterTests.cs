using System.Text.Json.Nodes;
using MedPeft.Data.Synthetic;
using MedPeft.Experiments;
using MedPeft.Models;

namespace MedPeft.Tests.Cli;

/// <summary>A study model given as a checkpoint folder plus a PEFT adapter (`adapter:` next to `path:`): merged once
/// into the cache, scored as base + adapter, keyed apart from the bare base.</summary>
public class StudyAdapterTests
{
    [Fact]
    public void A_model_with_a_lora_adapter_is_scored_as_base_plus_adapter_and_keyed_apart()
    {
        var root = Directory.CreateTempSubdirectory("medpeft-study-adapter-").FullName;
        var (model, data) = TinyBlipFolder.Create(root, SyntheticBenchOptions.Quick with
            { TrainImages = 30, ValidationImages = 5, TestImages = 10, PretrainImages = 1, ReportTrain = 1, ReportVal = 1, ReportTest = 1 }, seed: 5);
        var trained = Path.Combine(root, "lora-run");
        var t = CliRunner.Run("train", "--model", model, "--data", data, "--strategy", "lora@text_decoder", "--lora-r", "4",
            "--max-steps", "3", "--batch-size", "8", "--lr", "0.05", "--out", trained, "--threads", "2");
        Assert.True(t.ExitCode == 0, t.StdErr + t.StdOut);
        var adapter = Path.Combine(trained, "adapter");

        var file = Path.Combine(root, "study.yaml");
        File.WriteAllText(file, $"""
            models:
              - {"{"}name: base, path: {model}{"}"}
              - {"{"}name: base+lora, path: {model}, adapter: {adapter}{"}"}
            datasets: [{"{"}name: synth, format: slake, dir: {data}{"}"}]
            zero_shot: true
            strategies: [ln]
            epochs: 1
            max_steps: 1
            batch_size: 8
            seeds: [5]
            """);
        var cache = Path.Combine(root, "cache");
        var outDir = Path.Combine(root, "out");
        var r = CliRunner.Run("study", file, "--out", outDir, "--cache", cache, "--threads", "2");
        Assert.True(r.ExitCode == 0, r.StdErr + r.StdOut);
        Assert.Contains("4 run(s) ran here", r.StdOut);

        // Merged once: the LoRA-targeted decoder weights moved, nothing else did.
        var merged = Assert.Single(Directory.GetDirectories(Path.Combine(cache, "merged")));
        var baseW = Checkpoint.ReadSafetensors(Path.Combine(model, "model.safetensors"));
        var mergedW = Checkpoint.ReadSafetensors(Path.Combine(merged, "model.safetensors"));
        Assert.Equal(baseW.Keys.Order(), mergedW.Keys.Order());
        var changed = baseW.Keys.Where(k => !baseW[k].eq(mergedW[k]).all().item<bool>()).ToList();
        Assert.NotEmpty(changed);
        Assert.All(changed, k => Assert.Matches(@"^text_decoder\..*\.(query|value)\.weight$", k));

        // Zero-shot of base+lora = `medpeft eval --adapter` on the base.
        var e = CliRunner.Run("eval", "--model", model, "--adapter", adapter, "--data", data, "--json", "--threads", "2");
        Assert.True(e.ExitCode == 0, e.StdErr);
        var expected = JsonNode.Parse(e.StdOut)!;
        var rows = JsonNode.Parse(File.ReadAllText(Path.Combine(outDir, "results.json")))!.AsArray();
        var zs = rows.Single(x => x!["model"]!.GetValue<string>() == "base+lora" && x["strategy_spec"]!.GetValue<string>() == StudyStrategy.ZeroShot)!;
        Assert.Equal(expected["overall_acc"]!.GetValue<double>(), zs["overall_acc"]!.GetValue<double>(), 9);
        Assert.Equal(4, rows.Select(x => x!["run_key"]!.GetValue<string>()).Distinct().Count());

        // An adapter folder without weights: a clear error naming it.
        var bad = StudyFile.Parse(File.ReadAllText(file).Replace(adapter, Path.Combine(root, "missing")), file);
        Assert.Contains("adapter_model.safetensors", Assert.Throws<MedPeftException>(() => bad.Models[1].FolderFor("ln", "synth", cache)).Message);
    }

    [Fact]
    public void An_adapter_without_a_base_folder_is_a_one_line_error_naming_the_field()
    {
        var e = Assert.Throws<MedPeftException>(() => StudyFile.Parse("""
            models:
              - {preset: miss-base, adapter: /runs/ln/adapter}
            datasets: [{format: embedded, size: quick}]
            strategies: [ln]
            """, "s.yaml"));
        Assert.StartsWith("s.yaml", e.Message);
        Assert.Contains("models[0].adapter", e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }
}
