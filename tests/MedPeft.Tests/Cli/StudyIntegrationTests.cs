using System.Text.Json.Nodes;
using MedPeft.Experiments;
using MedPeft.Tuning;

namespace MedPeft.Tests.Cli;

/// <summary>The quick built-in study through the real CLI, run once per test process from an empty cache
/// (benchmark generation, pretraining, every registered method, the random-init row). Its cache is reused by the
/// other study integration tests, which then only fine-tune.</summary>
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
        var r = CliRunner.Run(new Dictionary<string, string> { ["MEDPEFT_CACHE"] = cache }, "study", "--quick", "--out", outDir, "--threads", "2");
        return new Result(root, cache, outDir, r);
    });

    public static Result Get() => Once.Value;
    public static Dictionary<string, string> Env => new() { ["MEDPEFT_CACHE"] = Cache };
}

public class StudyIntegrationTests
{
    [Fact]
    public void Quick_study_writes_one_measured_row_per_method_tables_report_and_tensorboard_files()
    {
        var (_, cache, outDir, r) = QuickStudy.Get();
        Assert.True(r.ExitCode == 0, r.StdErr + r.StdOut);
        Assert.Contains("overall", r.StdOut);
        Assert.Contains($"[study] {TuningMethods.All.Count + 2}/{TuningMethods.All.Count + 2} runs done", r.StdOut);

        var rows = JsonNode.Parse(File.ReadAllText(Path.Combine(outDir, "results.json")))!.AsArray();
        Assert.Equal(["zero-shot", .. TuningMethods.All.Keys, "full (random init)"], rows.Select(x => x!["strategy"]!.GetValue<string>()));
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

        // Tables, report, and one log + TensorBoard file per fine-tuning run.
        var md = File.ReadAllText(Path.Combine(outDir, "table-vqa.md"));
        Assert.Contains("| ln |", md);
        Assert.Equal(rows.Count + 1, File.ReadAllLines(Path.Combine(outDir, "table-vqa.csv")).Length);
        Assert.Equal(4, File.ReadAllText(Path.Combine(outDir, "report.html")).Split("<svg ").Length - 1);
        var runDirs = Directory.GetDirectories(Path.Combine(outDir, "runs"));
        Assert.Equal(rows.Count, runDirs.Length);
        var lnDir = runDirs.Single(d => Path.GetFileName(d).StartsWith("ln-s42-"));
        Assert.True(File.Exists(Path.Combine(lnDir, "log.jsonl")));
        var tb = TensorBoardReader.Read(Directory.GetFiles(lnDir, "events.out.tfevents.*").Single());
        Assert.Contains(tb.Scalars, s => s.Tag == "train/loss");
        Assert.Equal(byName["ln"]["overall_acc"]!.GetValue<double>(), tb.Scalars.Single(s => s.Tag == "test/overall_acc").Value, 3);

        // Restarting the finished study runs nothing and rebuilds the same tables; a new row reuses the cached model.
        var again = CliRunner.Run(QuickStudy.Env, "study", "--quick", "--out", outDir, "--threads", "2");
        Assert.True(again.ExitCode == 0, again.StdErr);
        Assert.Contains("0 run(s) ran here", again.StdOut);
        Assert.Equal(md, File.ReadAllText(Path.Combine(outDir, "table-vqa.md")));
        var other = CliRunner.Run(QuickStudy.Env, "study", "--quick", "--strategies", "ln", "--no-random-init", "--epochs", "1", "--out", Path.Combine(QuickStudy.Get().Root, "other"), "--threads", "2");
        Assert.True(other.ExitCode == 0, other.StdErr);
        Assert.Contains("pretrained model: cached", other.StdOut);
        Assert.True(Directory.Exists(Path.Combine(cache, "bench-quick")));
    }
}
