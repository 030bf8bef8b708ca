using System.Diagnostics;
using MedPeft.Experiments;

namespace MedPeft.Tests.Cli;

/// <summary>The results store under real processes: a tiny study file on the cached quick benchmark (QuickStudy's
/// cache), killed at a random (seeded) moment and restarted, and run by two processes at once. Both must end with
/// every run recorded exactly once and the same tables as an uninterrupted run (timing columns excluded).</summary>
public class StudyResumeTests
{
    // zero-shot + 2 strategies × 2 seeds = 5 runs of a few steps each; one thread ⇒ bitwise-reproducible metrics.
    const string Tiny = """
        name: tiny
        models: [embedded]
        datasets: [{format: embedded, size: quick}]
        zero_shot: true
        strategies: [ln, {spec: lora, options: {r: 2}}]
        epochs: 1
        max_steps: 4
        validation_limit: 8
        test_limit: 24
        seeds: [1, 2]
        """;

    static readonly Lazy<(string File, string Csv, string Md)> Reference = new(() =>
    {
        var dir = Directory.CreateTempSubdirectory("medpeft-tiny-ref-").FullName;
        var file = Path.Combine(dir, "tiny.yaml");
        File.WriteAllText(file, Tiny);
        var r = CliRunner.Run(QuickStudy.Env, "study", file, "--out", Path.Combine(dir, "out"), "--reproducible");
        Assert.True(r.ExitCode == 0, r.StdErr + r.StdOut);
        return (file, Deterministic(Path.Combine(dir, "out")), File.ReadAllText(Path.Combine(dir, "out", "table-vqa.md")));
    });

    /// <summary>table-vqa.csv without the timing columns (memory, seconds, steps/s), which differ run to run.</summary>
    static string Deterministic(string outDir)
    {
        var lines = File.ReadAllLines(Path.Combine(outDir, "table-vqa.csv"));
        int keep = lines[0].Split(',').Length - ResultsTables.TimingColumns.Length;
        return string.Join("\n", lines.Select(l => string.Join(",", l.Split(',').Take(keep))));
    }

    static int RecordedRuns(string outDir)
    {
        if (!File.Exists(Path.Combine(outDir, ResultsStore.FileName))) return 0;
        using var store = new ResultsStore(Path.Combine(outDir, ResultsStore.FileName));
        return store.Finished().Count;
    }

    static void AssertEveryRunRecordedOnce(string outDir, int runs)
    {
        using var store = new ResultsStore(Path.Combine(outDir, ResultsStore.FileName));
        var finished = store.Finished();
        Assert.Equal(runs, finished.Count);
        Assert.Equal(runs, finished.Select(f => f.Key).Distinct().Count());
        var finishedEvents = store.Events().Where(e => e.Kind == "finished").GroupBy(e => e.Key).ToList();
        Assert.Equal(runs, finishedEvents.Count);
        Assert.All(finishedEvents, g => Assert.Single(g));
    }

    static Process Start(string file, string outDir)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "MedPeft.Cli.dll"));
        foreach (var a in new[] { "study", file, "--out", outDir, "--reproducible" }) psi.ArgumentList.Add(a);
        foreach (var (k, v) in QuickStudy.Env) psi.Environment[k] = v;
        var p = Process.Start(psi)!;
        p.OutputDataReceived += (_, _) => { };
        p.ErrorDataReceived += (_, _) => { };
        p.BeginOutputReadLine(); p.BeginErrorReadLine();
        return p;
    }

    [Fact]
    public void Killed_at_a_random_moment_and_restarted_the_study_records_every_run_once_with_the_same_tables()
    {
        var (file, csv, _) = Reference.Value;
        var outDir = Path.Combine(Directory.CreateTempSubdirectory("medpeft-tiny-kill-").FullName, "out");
        var rng = new Random(6);
        // Two kills at random moments inside the grid: after a random number of recorded runs (0–1 in the first
        // process, 2–3 in the second) plus a random delay, but always before the last run is recorded — with a warm
        // cache a run takes well under a second, so a plain delay could let the study finish (machine load makes
        // wall-clock moments alone meaningless: they would all fall into process start-up).
        for (int attempt = 0; attempt < 2; attempt++)
        {
            using var p = Start(file, outDir);
            int afterRuns = attempt == 0 ? rng.Next(0, 2) : rng.Next(2, 4);
            var delay = TimeSpan.FromMilliseconds(rng.Next(0, 1500));
            while (!p.HasExited && RecordedRuns(outDir) < afterRuns) Thread.Sleep(20);
            var clock = Stopwatch.StartNew();
            while (!p.HasExited && clock.Elapsed < delay && RecordedRuns(outDir) < 4) Thread.Sleep(20);
            if (!p.HasExited) { p.Kill(entireProcessTree: true); p.WaitForExit(); }
        }
        Assert.True(RecordedRuns(outDir) < 5, "the study finished before it could be killed");
        var r = CliRunner.Run(QuickStudy.Env, "study", file, "--out", outDir, "--reproducible");
        Assert.True(r.ExitCode == 0, r.StdErr + r.StdOut);
        AssertEveryRunRecordedOnce(outDir, 5);
        Assert.Equal(csv, Deterministic(outDir));
    }

    [Fact]
    public void Two_processes_on_one_study_share_the_runs_and_never_run_one_twice()
    {
        var (file, csv, _) = Reference.Value;
        var outDir = Path.Combine(Directory.CreateTempSubdirectory("medpeft-tiny-two-").FullName, "out");
        using var a = Start(file, outDir);
        using var b = Start(file, outDir);
        Assert.True(a.WaitForExit(TimeSpan.FromMinutes(3)) && b.WaitForExit(TimeSpan.FromMinutes(3)));
        Assert.Equal((0, 0), (a.ExitCode, b.ExitCode));
        AssertEveryRunRecordedOnce(outDir, 5);
        using (var store = new ResultsStore(Path.Combine(outDir, ResultsStore.FileName)))
        {
            var events = store.Events();
            Assert.DoesNotContain(events, e => e.Kind is "retaken" or "failed");
            Assert.Equal(5, events.Count(e => e.Kind == "claimed"));   // no run was started twice
        }
        Assert.Equal(csv, Deterministic(outDir));
    }
}

public class StudyLrSweepTests
{
    [Fact]
    public void Lr_auto_runs_a_range_test_and_records_the_picked_rate_and_the_trials()
    {
        var dir = Directory.CreateTempSubdirectory("medpeft-lrsweep-").FullName;
        var file = Path.Combine(dir, "s.yaml");
        File.WriteAllText(file, """
            models: [embedded]
            datasets: [{format: embedded, size: quick}]
            strategies: [{spec: ln, learning_rate: auto}]
            lr_sweep_steps: 2
            epochs: 1
            max_steps: 2
            validation_limit: 8
            test_limit: 8
            seeds: [1]
            """);
        var r = CliRunner.Run(QuickStudy.Env, "study", file, "--out", Path.Combine(dir, "out"), "--reproducible");
        Assert.True(r.ExitCode == 0, r.StdErr + r.StdOut);
        var run = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "out", "results.json")))!.AsArray().Single()!;
        Assert.Equal("lr-sweep", run["learning_rate_source"]!.GetValue<string>());
        var trials = run["lr_sweep"]!.AsArray().Select(t => t!["learning_rate"]!.GetValue<double>()).ToList();
        Assert.Equal(MedPeft.Experiments.LrSweep.Grid("ln"), trials);
        Assert.Contains(run["learning_rate"]!.GetValue<double>(), trials);
        Assert.Equal(2, run["config"]!["lr_sweep_steps"]!.GetValue<int>());
        Assert.Contains("lr range test ln", r.StdOut);
    }
}
