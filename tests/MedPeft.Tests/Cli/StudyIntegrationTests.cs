using System.Text.Json.Nodes;
using MedPeft.Experiments;
using MedPeft.Tuning;

namespace MedPeft.Tests.Cli;

/// <summary>The quick built-in study through the real CLI in the reproducible mode, run once per test process from an
/// empty cache (benchmark generation, pretraining, every registered method, the random-init row). Its cache is reused
/// by the other study integration tests (also --reproducible: each mode has its own benchmark folder), which then
/// only fine-tune.</summary>
public static class QuickStudy
{
    public sealed record Result(string Root, string Cache, string OutDir, CliRunner.Result Cli);

    static readonly string Root = Directory.CreateTempSubdirectory("medpeft-study-").FullName;

    /// <summary>The benchmark + pretrained-model cache shared by the study tests of this process; set
    /// MEDPEFT_TEST_QUICK_CACHE to keep it across test runs while iterating (then pretraining is not re-tested).</summary>
    public static string Cache { get; } = Environment.GetEnvironmentVariable("MEDPEFT_TEST_QUICK_CACHE") is { Length: > 0 } c ? c : Path.Combine(Root, "cache");

    static readonly Lazy<Result> Once = new(() =>
    {
        var root = Root;
        var cache = Cache;
        var outDir = Path.Combine(root, "out");
        // In the reproducible mode: its scores are also the cross-machine evidence (docs/reproducibility/).
        var r = CliRunner.Run(new Dictionary<string, string> { ["MEDPEFT_CACHE"] = cache }, "study", "--quick", "--reproducible", "--out", outDir);
        return new Result(root, cache, outDir, r);
    });

    public static Result Get() => Once.Value;
    public static Dictionary<string, string> Env => new() { ["MEDPEFT_CACHE"] = Cache };
}

public class StudyIntegrationTests
{
    [Fact]
    public void Quick_study_writes_one_measured_row_per_method_and_task_tables_report_and_tensorboard_files()
    {
        var (_, cache, outDir, r) = QuickStudy.Get();
        Assert.True(r.ExitCode == 0, r.StdErr + r.StdOut);
        Assert.Contains("overall", r.StdOut);
        Assert.Contains("BLEU_4", r.StdOut);
        int perTask = TuningMethods.All.Count + 2;
        Assert.Contains($"[study] {2 * perTask}/{2 * perTask} runs done", r.StdOut);

        var all = JsonNode.Parse(File.ReadAllText(Path.Combine(outDir, "results.json")))!.AsArray();
        string[] methods = ["zero-shot", .. TuningMethods.All.Keys, "full (random init)"];
        Assert.Equal([.. methods.Select(m => ("vqa", m)), .. methods.Select(m => ("report", m))],
            all.Select(x => (x!["task"]!.GetValue<string>(), x["strategy"]!.GetValue<string>())));
        var rows = all.Where(x => x!["task"]!.GetValue<string>() == "vqa").ToList();
        var byName = rows.ToDictionary(x => x!["strategy"]!.GetValue<string>(), x => x!);
        foreach (var row in rows.Skip(1))
        {
            foreach (var key in new[] { "strategy", "trainable", "total", "closed_acc", "open_acc", "overall_acc", "train_seconds", "steps_per_second", "peak_memory_bytes", "learning_rate", "code_version", "run_key" })
                Assert.NotNull(row![key]);
            Assert.InRange(row!["overall_acc"]!.GetValue<double>(), 0, 100);
            Assert.True(row["train_seconds"]!.GetValue<double>() > 0);
            Assert.True(row["peak_memory_bytes"]!.GetValue<long>() > 10_000_000);
            Assert.Equal(StrategyDefaults.LearningRate(row["strategy_spec"]!.GetValue<string>()), row["learning_rate"]!.GetValue<double>());
        }
        long total = byName["full"]["total"]!.GetValue<long>();
        Assert.Equal(total, byName["full"]["trainable"]!.GetValue<long>());
        Assert.InRange(byName["ln"]["trainable"]!.GetValue<long>(), 1, total / 100);
        Assert.Equal(0, byName["zero-shot"]["trainable"]!.GetValue<long>());

        // Report generation on the same benchmark: BLEU-1..4 / ROUGE-L / CIDEr per run, on the captioning model
        // (the VQA model without its text_encoder), trained and measured like the VQA rows.
        var reports = all.Where(x => x!["task"]!.GetValue<string>() == "report").ToDictionary(x => x!["strategy"]!.GetValue<string>(), x => x!);
        string[] six = ["BLEU_1", "BLEU_2", "BLEU_3", "BLEU_4", "ROUGE_L", "CIDEr"];
        foreach (var (name, row) in reports)
        {
            var test = row["metrics"]!["test"]!.AsObject();
            foreach (var k in six) Assert.InRange(test[k]!.GetValue<double>(), 0, k == "CIDEr" ? 10 : 1);
            Assert.Null(test["METEOR"]);
            Assert.StartsWith("METEOR not computed", test["METEOR_note"]!.GetValue<string>());
            Assert.Equal(EmbeddedPlan.Quick.ReportTest, test["reports"]!.GetValue<int>());
            Assert.Equal(test["BLEU_4"]!.GetValue<double>(), row["BLEU_4"]!.GetValue<double>());   // flattened like VQA's accuracies
            if (name == "zero-shot") continue;
            Assert.True(row["train_seconds"]!.GetValue<double>() > 0 && row["steps_per_second"]!.GetValue<double>() > 0);
            Assert.True(row["peak_memory_bytes"]!.GetValue<long>() > 10_000_000);
            Assert.Equal(EmbeddedPlan.Quick.FineTuneEpochs * ((EmbeddedPlan.Quick.ReportTrain + 31) / 32), row["steps"]!.GetValue<int>());
            Assert.NotEmpty(row["loss_curve"]!.AsArray());
            Assert.NotNull(row["best_validation_bleu4"]);   // validation BLEU-4 × 100, the selection metric
            Assert.Null(row["best_validation_acc"]);      // issue 11: not logged as an accuracy
            Assert.Equal(StrategyDefaults.LearningRate(row["strategy_spec"]!.GetValue<string>()), row["learning_rate"]!.GetValue<double>());
        }
        long capTotal = reports["full"]["total"]!.GetValue<long>();
        Assert.Equal(capTotal, reports["full"]["trainable"]!.GetValue<long>());
        Assert.Equal(capTotal, reports["zero-shot"]["total"]!.GetValue<long>());
        Assert.Equal(capTotal, reports["full (random init)"]["total"]!.GetValue<long>());
        Assert.InRange(capTotal, total / 2, total - 1);   // text_encoder dropped
        Assert.InRange(reports["ln"]["trainable"]!.GetValue<long>(), 1, capTotal / 100);

        // Tables, report, and one log + TensorBoard file per run.
        var md = File.ReadAllText(Path.Combine(outDir, "table-vqa.md"));
        Assert.Contains("| ln |", md);
        Assert.Equal(rows.Count + 1, File.ReadAllLines(Path.Combine(outDir, "table-vqa.csv")).Length);
        var reportMd = File.ReadAllText(Path.Combine(outDir, "table-report.md"));
        Assert.Contains("| BLEU_1 | BLEU_2 | BLEU_3 | BLEU_4 | ROUGE_L | CIDEr |", reportMd);
        Assert.Matches(@"\| ln \| [\d,]+ \| [\d.]+ \| 0\.03 \| \d+ \| [\d.]+ \| [\d.]+ \| 0\.\d{3} \|", reportMd);
        Assert.Equal(reports.Count + 1, File.ReadAllLines(Path.Combine(outDir, "table-report.csv")).Length);
        Assert.Contains("BLEU_4", r.StdOut);   // the console table of the report rows
        Assert.Contains("embedded-quick-report", File.ReadAllText(Path.Combine(outDir, "report.html")));
        var runDirs = Directory.GetDirectories(Path.Combine(outDir, "runs"));
        Assert.Equal(all.Count, runDirs.Length);
        string RunDir(JsonNode row) => runDirs.Single(d => Path.GetFileName(d).EndsWith(row["run_key"]!.GetValue<string>()[..8]));
        var lnDir = RunDir(byName["ln"]);
        Assert.True(File.Exists(Path.Combine(lnDir, "log.jsonl")));
        var tb = TensorBoardReader.Read(Directory.GetFiles(lnDir, "events.out.tfevents.*").Single());
        Assert.Contains(tb.Scalars, s => s.Tag == "train/loss");
        Assert.Equal(byName["ln"]["overall_acc"]!.GetValue<double>(), tb.Scalars.Single(s => s.Tag == "test/overall_acc").Value, 3);
        var reportTb = TensorBoardReader.Read(Directory.GetFiles(RunDir(reports["ln"]), "events.out.tfevents.*").Single());
        Assert.Equal(reports["ln"]["BLEU_4"]!.GetValue<double>(), reportTb.Scalars.Single(s => s.Tag == "test/BLEU_4").Value, 5);
        Assert.Contains(reportTb.Scalars, s => s.Tag == "validation/BLEU_4");

        // Restarting the finished study runs nothing and rebuilds the same tables; a new row reuses the cached model.
        var again = CliRunner.Run(QuickStudy.Env, "study", "--quick", "--reproducible", "--out", outDir);
        Assert.True(again.ExitCode == 0, again.StdErr);
        Assert.Contains("0 run(s) ran here", again.StdOut);
        Assert.Equal(md, File.ReadAllText(Path.Combine(outDir, "table-vqa.md")));
        Assert.Equal(reportMd, File.ReadAllText(Path.Combine(outDir, "table-report.md")));
        var other = CliRunner.Run(QuickStudy.Env, "study", "--quick", "--task", "vqa", "--strategies", "ln", "--no-random-init", "--epochs", "1", "--out", Path.Combine(QuickStudy.Get().Root, "other"), "--reproducible");
        Assert.True(other.ExitCode == 0, other.StdErr);
        Assert.Contains("pretrained model: cached", other.StdOut);
        Assert.Contains("2 runs", other.StdOut);   // --task vqa: zero-shot and ln on the VQA split only
        Assert.True(Directory.Exists(Path.Combine(cache, "bench-quick-reproducible")));
        Assert.Equal("reproducible", byName["ln"]["reproducibility"]!["mode"]!.GetValue<string>());
        Assert.Equal("DEFAULT", byName["ln"]["reproducibility"]!["aten_cpu_capability"]!.GetValue<string>());
        Assert.False(byName["ln"]["reproducibility"]!["mkldnn"]!.GetValue<bool>());
        Assert.True(byName["ln"]["config"]!["reproducible"]!.GetValue<bool>());
    }

    /// <summary>The cross-machine check (issue 14): this machine's quick reproducible study gives exactly the scores,
    /// benchmark and pretrained weights recorded in docs/reproducibility/quick-study-scores.json. A failure lists what
    /// differs, the earliest stage first; docs/reproducibility.md says what to do.</summary>
    [Fact]
    public void Quick_reproducible_study_reproduces_the_checked_in_scores_exactly()
    {
        var (_, cache, outDir, r) = QuickStudy.Get();
        Assert.True(r.ExitCode == 0, r.StdErr + r.StdOut);
        var file = Path.Combine(AppContext.BaseDirectory, "reproducibility", "quick-study-scores.json");
        Assert.True(File.Exists(file), "docs/reproducibility/quick-study-scores.json is missing: make it with ./medpeft study --quick --reproducible --evidence docs/reproducibility/quick-study-scores.json");
        var expected = JsonNode.Parse(File.ReadAllText(file))!.AsObject();
        var results = JsonNode.Parse(File.ReadAllText(Path.Combine(outDir, "results.json")))!.AsArray();
        var here = ReproducibilityEvidence.Make(results, Path.Combine(cache, "bench-quick-reproducible"));
        var differences = ReproducibilityEvidence.Differences(expected, here);
        Assert.True(differences.Count == 0,
            $"this machine ({here["cpu"]}; {here["cpu_flags"]}) does not reproduce the evidence made on {expected["cpu"]} ({expected["cpu_flags"]}):\n" + string.Join("\n", differences.Take(20)));
        Assert.NotNull(expected["benchmark_sha256"]);
    }
}
