using MedPeft.Evaluation;
using MedPeft.Experiments;
using MedPeft.Training;
using MedPeft.Tuning;
using Spectre.Console;

namespace MedPeft.Cli;

/// <summary>Progress and tables. On a terminal: live Spectre progress bars (loss, lr, steps/s, ETA). Piped or in
/// CI: one plain line per 10 % of a run, so logs stay readable.</summary>
static class ConsoleUi
{
    public static bool Interactive => AnsiConsole.Profile.Capabilities.Interactive && !Console.IsOutputRedirected;

    /// <summary>Piped output has no terminal width; give tables room instead of Spectre's 80-column default.</summary>
    public static void Configure()
    {
        if (Console.IsOutputRedirected) AnsiConsole.Profile.Width = 160;
    }

    /// <summary>Runs work with a progress context; the callback gets a factory of per-run progress reporters.</summary>
    public static T WithProgress<T>(Func<Func<string, IProgress<TrainProgress>>, Action<string>, T> work)
    {
        if (!Interactive)
            return work(name => new PlainProgress(name), stage => Console.WriteLine($"== {stage}"));
        T result = default!;
        AnsiConsole.Progress()
            .AutoClear(false)
            .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn(), new SpinnerColumn())
            .Start(ctx =>
            {
                ProgressTask? stageTask = null;
                result = work(name => new SpectreProgress(ctx.AddTask(Markup.Escape(name))), stage =>
                {
                    stageTask?.StopTask();
                    stageTask = ctx.AddTask($"[grey]{Markup.Escape(stage)}[/]", maxValue: 1);
                    stageTask.IsIndeterminate = true;
                });
                stageTask?.StopTask();
            });
        return result;
    }

    /// <summary>Runs a study with two levels of progress: the grid (runs done / total, ETA) on top and the current
    /// run's training bar below it. Plain lines when output is redirected.</summary>
    public static T WithStudyProgress<T>(Func<IStudyProgress, T> work)
    {
        if (!Interactive) return work(new PlainStudyProgress());
        T result = default!;
        AnsiConsole.Progress()
            .AutoClear(false)
            .HideCompleted(true)
            .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn(), new SpinnerColumn())
            .Start(ctx =>
            {
                var ui = new SpectreStudyProgress(ctx);
                result = work(ui);
                ui.Close();
            });
        return result;
    }

    sealed class SpectreStudyProgress(ProgressContext ctx) : IStudyProgress
    {
        readonly ProgressTask _grid = ctx.AddTask("[bold]study[/]", maxValue: 1);
        ProgressTask? _stage;

        public void Stage(string message)
        {
            _stage?.StopTask();
            _stage = ctx.AddTask($"[grey]{Markup.Escape(message)}[/]", maxValue: 1);
            _stage.IsIndeterminate = true;
        }

        public void Overall(int done, int total, TimeSpan? eta)
        {
            _grid.MaxValue = Math.Max(1, total);
            _grid.Value = done;
            _grid.Description = $"[bold]study[/] {done}/{total} runs" + (eta is TimeSpan e ? $" [grey]eta {e:hh\\:mm\\:ss}[/]" : "");
        }

        public IProgress<TrainProgress>? RunStarted(StudyRun run)
        {
            _stage?.StopTask();
            return new SpectreProgress(ctx.AddTask(Markup.Escape($"{run.Index}: {run.Method} · {run.Dataset.Name} · seed {run.Seed}")));
        }

        public void RunFinished(StudyRun run, System.Text.Json.Nodes.JsonObject result) => _stage?.StopTask();

        public void Close() { _stage?.StopTask(); _grid.StopTask(); }
    }

    sealed class PlainStudyProgress : IStudyProgress
    {
        string _last = "";
        public void Stage(string message) => Console.WriteLine($"== {message}");
        public void Overall(int done, int total, TimeSpan? eta)
        {
            var line = $"[study] {done}/{total} runs done" + (eta is TimeSpan e ? $", eta {e:hh\\:mm\\:ss}" : "");
            if (line != _last) Console.WriteLine(_last = line);
        }
        public IProgress<TrainProgress>? RunStarted(StudyRun run)
        {
            Console.WriteLine($"== run {run.Index}: {run.Method} · {run.Dataset.Name} · seed {run.Seed} ({run.Key})");
            return new PlainProgress(run.Method);
        }
        public void RunFinished(StudyRun run, System.Text.Json.Nodes.JsonObject result)
        {
            var test = result["metrics"]?["test"];
            string Acc(string k) => ResultsTables.Number(test?[k]) is double v ? Pct(v) : "–";
            string Score(string k) => ResultsTables.Number(test?[k]) is double v ? v.ToString("F3", System.Globalization.CultureInfo.InvariantCulture) : "–";
            var scores = run.Dataset.Task == "report"
                ? $"BLEU-4 {Score("BLEU_4")} (BLEU-1 {Score("BLEU_1")}, ROUGE-L {Score("ROUGE_L")}, CIDEr {Score("CIDEr")})"
                : $"overall {Acc("overall_acc")} (closed {Acc("closed_acc")}, open {Acc("open_acc")})";
            Console.WriteLine($"== run {run.Index} finished in {ResultsTables.Number(result["wall_seconds"]):F0} s: {scores}"
                              + (run.Strategy.IsZeroShot ? "" : $", lr {ResultsTables.Number(result["learning_rate"]):G3}"));
        }
    }

    sealed class SpectreProgress(ProgressTask task) : IProgress<TrainProgress>
    {
        readonly string _name = task.Description;
        public void Report(TrainProgress p)
        {
            task.MaxValue = p.TotalSteps;
            task.Value = p.Step;
            var val = p.BestValidation is double v ? $" val {v:F1}%" : "";
            task.Description = $"{_name} [grey]loss {p.Loss:F3} lr {p.LearningRate:G2} {p.StepsPerSecond:F1} it/s{val}[/]";
            if (p.Step == p.TotalSteps) task.StopTask();
        }
    }

    sealed class PlainProgress(string name) : IProgress<TrainProgress>
    {
        int _lastDecile = -1;
        public void Report(TrainProgress p)
        {
            int decile = p.Step * 10 / Math.Max(1, p.TotalSteps);
            if (decile == _lastDecile && p.Step != p.TotalSteps) return;
            _lastDecile = decile;
            var val = p.BestValidation is double v ? $" best_val={v:F1}%" : "";
            Console.WriteLine($"[{name}] step {p.Step}/{p.TotalSteps} loss={p.Loss:F4} lr={p.LearningRate:G3} {p.StepsPerSecond:F2} it/s eta={p.Eta:mm\\:ss}{val}");
        }
    }

    public static string Count(long n) => n.ToString("N0", System.Globalization.CultureInfo.InvariantCulture);
    public static string Pct(double x) => double.IsFinite(x) ? x.ToString("F1", System.Globalization.CultureInfo.InvariantCulture) : "–";
    public static string Bytes(long b) => $"{b / (1024.0 * 1024.0):F0} MiB";

    /// <summary>One task's rows, metrics printed as the Markdown table prints them (mean ± std over seeds).</summary>
    public static void StudyTable(string title, IReadOnlyList<ResultsRow> rows, string task)
    {
        var metrics = rows.SelectMany(r => r.Metrics.Keys).Distinct().ToList();
        var t = new Table().Border(TableBorder.Rounded).Title(Markup.Escape(title));
        var heads = new List<string> { "method", "trainable", "%" };
        heads.AddRange(metrics.Select(MetricTitle));
        heads.AddRange(["train s", "steps/s", "peak mem"]);
        foreach (var h in heads) t.AddColumn(new TableColumn(Markup.Escape(h)) { Alignment = h == "method" ? Justify.Left : Justify.Right });
        foreach (var r in rows)
        {
            var cells = new List<string> { Markup.Escape(r.Method), Count(r.Trainable), r.SharePercent.ToString(r.SharePercent < 1 ? "F4" : "F2", System.Globalization.CultureInfo.InvariantCulture) };
            cells.AddRange(metrics.Select(m => r.Metrics.TryGetValue(m, out var v) ? ResultsTables.MeanStd(v, r.Seeds, task) : "–"));
            cells.AddRange([r.ZeroShot ? "–" : r.TrainSeconds.ToString("F0"), r.ZeroShot ? "–" : r.StepsPerSecond.ToString("F2"), $"{r.PeakMemoryMiB:F0} MiB"]);
            t.AddRow(cells.ToArray());
        }
        AnsiConsole.Write(t);
    }

    /// <summary>"test.overall_acc" → "overall", "extra:slake.overall_acc" → "slake overall".</summary>
    static string MetricTitle(string key)
    {
        var (split, field) = (key[..key.IndexOf('.')], key[(key.IndexOf('.') + 1)..]);
        var name = field switch { "closed_acc" => "closed", "open_acc" => "open", "overall_acc" => "overall", "open_token_recall" => "open recall", _ => field };
        return split == "test" ? name : $"{split.Replace("extra:", "")} {name}";
    }

    public static void TrainableTable(string arch, string strategy, TrainableReport r)
    {
        var t = new Table().Border(TableBorder.Rounded).Title($"{Markup.Escape(arch)} · strategy {Markup.Escape(strategy)}");
        t.AddColumn("tower"); t.AddColumn(new TableColumn("trainable") { Alignment = Justify.Right });
        t.AddColumn(new TableColumn("total") { Alignment = Justify.Right }); t.AddColumn(new TableColumn("% of tower") { Alignment = Justify.Right });
        foreach (var tw in r.Towers)
            t.AddRow(tw.Tower, Count(tw.Trainable), Count(tw.Total), (100.0 * tw.Trainable / Math.Max(1, tw.Total)).ToString("F4"));
        t.AddRow("[bold]all[/]", $"[bold]{Count(r.Trainable)}[/]", $"[bold]{Count(r.Total)}[/]", $"[bold]{100 * r.Share:F4}[/]");
        AnsiConsole.Write(t);
    }

    public static void VqaScores(string title, VqaScores s)
    {
        var t = new Table().Border(TableBorder.Rounded).Title(Markup.Escape(title));
        foreach (var h in new[] { "questions", "closed", "open", "overall", "open token recall" }) t.AddColumn(new TableColumn(h) { Alignment = Justify.Right });
        t.AddRow($"{s.Total} ({s.Closed} closed / {s.Open} open)", Pct(s.ClosedAccuracy), Pct(s.OpenAccuracy), Pct(s.OverallAccuracy), Pct(s.OpenTokenRecall));
        AnsiConsole.Write(t);
    }
}
