using System.Text.Json.Nodes;

namespace MedPeft.Tests.Cli;

/// <summary>The quick embedded study through the real CLI, from an empty cache: benchmark generation, pretraining,
/// every default strategy, the random-init row, results.json.</summary>
public class StudyIntegrationTests
{
    [Fact]
    public void Quick_study_writes_one_measured_row_per_strategy()
    {
        var root = Directory.CreateTempSubdirectory("medpeft-study-").FullName;
        var outDir = Path.Combine(root, "out");
        var env = new Dictionary<string, string> { ["MEDPEFT_CACHE"] = Path.Combine(root, "cache") };
        var r = CliRunner.Run(env, "study", "--quick", "--out", outDir, "--threads", "2");
        Assert.True(r.ExitCode == 0, r.StdErr + r.StdOut);
        Assert.Contains("overall", r.StdOut);

        var rows = JsonNode.Parse(File.ReadAllText(Path.Combine(outDir, "results.json")))!.AsArray();
        Assert.Equal(["zero-shot", "full", "ln", "ffn", "attn", "lora", "full (random init)"], rows.Select(x => x!["strategy"]!.GetValue<string>()));
        var byName = rows.ToDictionary(x => x!["strategy"]!.GetValue<string>(), x => x!);
        foreach (var row in rows.Skip(1))
        {
            foreach (var key in new[] { "strategy", "trainable", "total", "closed_acc", "open_acc", "overall_acc", "train_seconds", "steps_per_second", "peak_memory_bytes" })
                Assert.NotNull(row![key]);
            Assert.InRange(row!["overall_acc"]!.GetValue<double>(), 0, 100);
            Assert.True(row["train_seconds"]!.GetValue<double>() > 0);
            Assert.True(row["peak_memory_bytes"]!.GetValue<long>() > 10_000_000);
            Assert.True(File.Exists(Path.Combine(outDir, "runs", Slug(row["strategy"]!.GetValue<string>()), "log.jsonl")));
        }
        long total = byName["full"]["total"]!.GetValue<long>();
        Assert.Equal(total, byName["full"]["trainable"]!.GetValue<long>());
        Assert.InRange(byName["ln"]["trainable"]!.GetValue<long>(), 1, total / 100);
        Assert.Equal(0, byName["zero-shot"]["trainable"]!.GetValue<long>());

        // A second run reuses the cached benchmark and pretrained model.
        var again = CliRunner.Run(env, "study", "--quick", "--strategies", "ln", "--no-random-init", "--threads", "2");
        Assert.True(again.ExitCode == 0, again.StdErr);
        Assert.Contains("pretrained model: cached", again.StdOut);
    }

    static string Slug(string s) => new(s.Select(c => char.IsLetterOrDigit(c) ? c : '-').ToArray());
}
