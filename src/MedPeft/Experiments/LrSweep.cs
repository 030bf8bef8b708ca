namespace MedPeft.Experiments;

/// <summary>The learning-rate range test behind <c>--lr-sweep</c> / <c>learning_rate: auto</c>: a few short
/// trainings per strategy at rates on a log grid around its default (×1/10, ×1/3, ×1, ×3, ×10), each from the same
/// starting model and seed. The pick is the best validation accuracy on a small validation subset; ties (common on
/// few questions) go to the lower final training loss, and a diverged rate never wins. LN-tuning is why this matters:
/// at full fine-tuning's rate it barely moves (docs/learning-rates.md).</summary>
public static class LrSweep
{
    public static readonly double[] Factors = [0.1, 1.0 / 3, 1, 3, 10];
    /// <summary>Optimizer steps per trial (a study file's lr_sweep_steps overrides) and validation questions scored per trial.</summary>
    public const int DefaultSteps = 30;
    public const int ValidationQuestions = 60;

    public static IReadOnlyList<double> Grid(string strategy) =>
        Factors.Select(f => Round(StrategyDefaults.LearningRate(strategy) * f)).ToList();

    /// <summary>Two significant digits, so the recorded rate reads like one a person would write (3e-3, 1e-2).</summary>
    static double Round(double x) => double.Parse(x.ToString("G2", System.Globalization.CultureInfo.InvariantCulture), System.Globalization.CultureInfo.InvariantCulture);

    public static (double Picked, IReadOnlyList<LrTrial> Trials) Pick(string strategy, int steps, Func<double, int, LrTrial> trial, Action<string>? stage = null)
    {
        var trials = new List<LrTrial>();
        foreach (var lr in Grid(strategy))
        {
            stage?.Invoke($"lr range test {strategy}: {lr:G2}");
            // Only divergence (a non-finite loss) is a result of the trial; any other error is the run's and propagates.
            try { trials.Add(trial(lr, steps)); }
            catch (TrainingDivergedException) { trials.Add(new LrTrial(lr, null, double.NaN)); }
        }
        return (Choose(trials), trials);
    }

    /// <summary>The range test of a study run on a folder dataset: each trial trains into its own folder under
    /// RUN/lr-sweep (deleted afterwards: the trial checkpoints are not kept) with <paramref name="train"/>(lr, outDir,
    /// steps) and is scored by its best validation and last loss; a diverged trial (non-finite loss) never wins, any
    /// other failure (a missing split, a bad option) fails the run. Returns
    /// the run's own rate (no test) when the run is not <c>learning_rate: auto</c>.</summary>
    public static (double? Rate, IReadOnlyList<LrTrial> Trials) ForRun(StudyRun run, RunContext ctx, Func<double, string, int, Training.TrainResult> train)
    {
        if (!run.LrAuto) return (run.LearningRate, []);
        var sweepDir = Path.Combine(ctx.RunDir, "lr-sweep");
        var (picked, trials) = Pick(run.Strategy.Spec, run.Training.LrSweepSteps, (lr, steps) =>
        {
            var r = train(lr, Path.Combine(sweepDir, lr.ToString("G2", System.Globalization.CultureInfo.InvariantCulture)), steps);
            return Trial(lr, r);
        }, ctx.Stage);
        if (Directory.Exists(sweepDir)) Directory.Delete(sweepDir, recursive: true);
        return (picked, trials);
    }

    /// <summary>A finished trial: its best validation and its last logged loss.</summary>
    public static LrTrial Trial(double lr, Training.TrainResult r) => new(lr, r.BestValidation, r.LossCurve.Count > 0 ? r.LossCurve[^1].Loss : double.NaN);

    public static double Choose(IReadOnlyList<LrTrial> trials)
    {
        var ok = trials.Where(t => double.IsFinite(t.FinalLoss)).ToList();
        if (ok.Count == 0) throw new MedPeftException($"lr range test: every rate diverged ({string.Join(", ", trials.Select(t => t.LearningRate.ToString("G2")))})");
        return ok.OrderByDescending(t => t.Validation ?? double.NegativeInfinity).ThenBy(t => t.FinalLoss).First().LearningRate;
    }
}
