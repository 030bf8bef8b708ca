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

    public static void StudyTable(IReadOnlyList<StudyRow> rows)
    {
        var t = new Table().Border(TableBorder.Rounded).Title("Med-VQA on the embedded benchmark (test split, accuracy %)");
        foreach (var h in new[] { "strategy", "trainable", "%", "closed", "open", "overall", "open recall", "train s", "steps/s", "peak mem" })
            t.AddColumn(new TableColumn(h) { Alignment = h == "strategy" ? Justify.Left : Justify.Right });
        foreach (var r in rows)
            t.AddRow(Markup.Escape(r.Strategy), Count(r.Trainable), r.TrainableShare.ToString(r.TrainableShare < 1 ? "F4" : "F2"),
                Pct(r.Test.ClosedAccuracy), Pct(r.Test.OpenAccuracy), Pct(r.Test.OverallAccuracy), Pct(r.Test.OpenTokenRecall),
                r.Steps == 0 ? "–" : r.TrainSeconds.ToString("F0"), r.Steps == 0 ? "–" : r.StepsPerSecond.ToString("F2"), Bytes(r.PeakMemoryBytes));
        AnsiConsole.Write(t);
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
