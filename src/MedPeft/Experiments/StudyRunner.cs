using System.Diagnostics;
using System.Reflection;
using System.Text.Json.Nodes;
using MedPeft.Data;
using MedPeft.Training;

namespace MedPeft.Experiments;

public sealed record StudyRunOptions
{
    public required string OutDir { get; init; }
    public string CacheDir { get; init; } = StudyCache.DefaultDir();
    public string Device { get; init; } = "cpu";
    /// <summary>Run only this run of the plan (a Slurm array task); no waiting for others, no tables.</summary>
    public int? RunIndex { get; init; }
    /// <summary>How often the claim of a running run is refreshed; defaults to a quarter of the store's lease.</summary>
    public TimeSpan? HeartbeatEvery { get; init; }
}

/// <summary>What the study tells its caller while it runs (the CLI draws the overall and per-run bars from it).</summary>
public interface IStudyProgress
{
    void Stage(string message);
    /// <summary>Runs finished (by anyone) out of the plan's total, and an ETA from this process's mean run time.</summary>
    void Overall(int done, int total, TimeSpan? eta);
    IProgress<TrainProgress>? RunStarted(StudyRun run);
    void RunFinished(StudyRun run, JsonObject result);
}

public sealed record StudySummary(int Total, int RanHere, int Skipped, IReadOnlyList<string> Failures, IReadOnlyList<StoredRun> Finished, double Seconds);

/// <summary>Runs a study against its results store (OUT/results.db): every run of the plan not yet done is claimed,
/// run with a heartbeat on its claim, and recorded when it finishes. Runs claimed by a live process are waited for
/// (and retaken if their claim goes stale), so every process ends with the whole grid and writes the outputs.</summary>
public sealed class StudyRunner(StudySpec spec, StudyRunOptions options, IStudyProgress progress)
{
    public static string CodeVersion { get; } = FindCodeVersion();

    public StudySummary Run(CancellationToken cancel = default)
    {
        var clock = Stopwatch.StartNew();
        var plan = StudyPlan.Expand(spec);
        foreach (var s in plan.Skipped) progress.Stage(s);
        Directory.CreateDirectory(options.OutDir);
        using var store = new ResultsStore(Path.Combine(options.OutDir, ResultsStore.FileName));
        var runs = plan.Runs;
        if (options.RunIndex is int only)
        {
            if (only < 0 || only >= runs.Count) throw new MedPeftException($"--run-index {only}: the study has runs 0..{runs.Count - 1}");
            runs = [runs[only]];
        }
        var failures = new List<string>();
        int ranHere = 0, skipped = 0;
        var times = new List<double>();
        var pending = new List<StudyRun>(runs);
        var heartbeat = options.HeartbeatEvery ?? TimeSpan.FromTicks(store.Lease.Ticks / 4);

        void Report()
        {
            int done = runs.Count(r => store.IsDone(r.Key));
            TimeSpan? eta = times.Count == 0 ? null : TimeSpan.FromSeconds(times.Average() * (runs.Count - done));
            progress.Overall(done, runs.Count, eta);
        }

        while (pending.Count > 0)
        {
            var busy = new List<StudyRun>();
            foreach (var run in pending)
            {
                cancel.ThrowIfCancellationRequested();
                Report();
                switch (store.TryClaim(run))
                {
                    case ResultsStore.ClaimOutcome.Done: skipped++; continue;
                    case ResultsStore.ClaimOutcome.Busy: busy.Add(run); continue;
                }
                var started = Stopwatch.StartNew();
                using (new Timer(_ => { try { store.Heartbeat(run.Key); } catch (Exception) { /* the next beat retries */ } }, null, heartbeat, heartbeat))
                {
                    try
                    {
                        var result = Execute(run, cancel, started);
                        if (store.Finish(run, result)) { ranHere++; times.Add(started.Elapsed.TotalSeconds); progress.RunFinished(run, result); }
                    }
                    catch (Exception e) when (e is MedPeftException or IOException or InvalidOperationException or ArgumentException or System.Runtime.InteropServices.ExternalException)
                    {
                        store.Fail(run, e.Message);
                        failures.Add($"{run.Method} (run {run.Index}, {run.Dataset.Name}, seed {run.Seed}): {e.Message}");
                        progress.Stage($"run {run.Index} {run.Method} failed: {e.Message}");
                    }
                }
            }
            // Another process holds these; wait for it to finish them (or for its claim to go stale) unless this
            // process is one array task of many, and give up on runs that keep failing.
            if (options.RunIndex is not null || busy.Count == 0) break;
            pending = busy;
            progress.Stage($"waiting for {busy.Count} run(s) claimed by another process");
            Thread.Sleep(TimeSpan.FromSeconds(Math.Clamp(store.Lease.TotalSeconds / 8, 0.2, 2)));   // a cheap read; keeps the tail short
            pending = pending.Where(r => !store.IsDone(r.Key)).ToList();
        }
        Report();
        return new StudySummary(runs.Count, ranHere, skipped, failures, store.Finished(), clock.Elapsed.TotalSeconds);
    }

    JsonObject Execute(StudyRun run, CancellationToken cancel, Stopwatch started)
    {
        if (run.Training.Reproducible && Reproducibility.Settings is null)
            throw new MedPeftException("the study runs in the reproducible mode, but this process is not in it (medpeft study --reproducible)");
        var runDir = RunDir(options.OutDir, run);
        Directory.CreateDirectory(runDir);
        if (!StudyTasks.Available.TryGetValue(run.Dataset.Task, out var make))
            throw new MedPeftException($"task {run.Dataset.Task} is not available ({StudyTasks.WhyUnavailable(run.Dataset.Task)})");
        var ctx = new RunContext(runDir, options.CacheDir, options.Device, progress.RunStarted(run), progress.Stage, cancel);
        var outcome = make().Run(run, ctx);
        var result = outcome.ToJson(run, started.Elapsed.TotalSeconds, CodeVersion);
        StudyTensorBoard.Write(runDir, ctx.LogPath, result);
        return result;
    }

    /// <summary>OUT/runs/&lt;method&gt;-s&lt;seed&gt;-&lt;key&gt;: readable, and unique by the run key.</summary>
    public static string RunDir(string outDir, StudyRun run) =>
        Path.Combine(outDir, "runs", $"{Slug(run.Method)}-s{run.Seed}-{run.Key[..8]}");

    static string Slug(string s) => new string(s.Select(c => char.IsLetterOrDigit(c) ? char.ToLowerInvariant(c) : '-').ToArray()).Trim('-');

    /// <summary>The git commit of the source tree the binary was built in (if git and the tree are there), else
    /// the assembly's informational version.</summary>
    static string FindCodeVersion()
    {
        try
        {
            var psi = new ProcessStartInfo("git", ["-C", AppContext.BaseDirectory, "rev-parse", "HEAD"]) { RedirectStandardOutput = true, RedirectStandardError = true };
            using var p = Process.Start(psi)!;
            var sha = p.StandardOutput.ReadToEnd().Trim();
            if (p.WaitForExit(5000) && p.ExitCode == 0 && sha.Length == 40)
            {
                var dirty = Process.Start(new ProcessStartInfo("git", ["-C", AppContext.BaseDirectory, "status", "--porcelain", "--untracked-files=no"]) { RedirectStandardOutput = true })!;
                var changes = dirty.StandardOutput.ReadToEnd();
                dirty.WaitForExit(5000);
                return "git:" + sha + (changes.Trim().Length > 0 ? "-dirty" : "");
            }
        }
        catch (System.ComponentModel.Win32Exception) { }   // no git
        return typeof(StudyRunner).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "unknown";
    }
}

/// <summary>A run's TensorBoard file, from its training log (loss, lr, steps/s and validation per step) and its
/// final metrics (at the last step), written when the run finishes.</summary>
public static class StudyTensorBoard
{
    public static string? Write(string runDir, string logPath, JsonObject result)
    {
        double now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() / 1000.0;
        using var tb = new TensorBoardWriter(runDir, now);
        long last = 0;
        // The trainer logs the selection metric as "validation": overall accuracy (%) for VQA, BLEU-4 × 100 for
        // report generation (shown on the test metrics' 0–1 scale).
        bool report = result["task"]?.GetValue<string>() == "report";
        var (validationTag, validationScale) = report ? ("validation/BLEU_4", 0.01) : ("validation/overall_acc", 1.0);
        if (File.Exists(logPath))
            foreach (var line in JsonLines.Read(logPath))
            {
                double? Num(string f) => ResultsTables.Number(line.Object[f]);
                long step = (long)(Num("step") ?? 0);
                last = Math.Max(last, step);
                double wall = now;
                foreach (var (field, tag, scale) in new[] { ("loss", "train/loss", 1.0), ("lr", "train/learning_rate", 1.0), ("steps_per_second", "train/steps_per_second", 1.0), ("validation", validationTag, validationScale) })
                    if (Num(field) is double v) tb.Scalar(tag, step, (float)(v * scale), wall);
            }
        foreach (var (split, scores) in result["metrics"]!.AsObject())
            foreach (var (name, value) in scores!.AsObject())
                if (ResultsTables.Number(value) is double d)
                    tb.Scalar($"{split.Replace(':', '/')}/{name}", last, (float)d, now);
        return tb.FilePath;
    }
}
