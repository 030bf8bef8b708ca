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
            trials.Add(trial(lr, steps));
        }
        return (Choose(trials), trials);
    }

    public static double Choose(IReadOnlyList<LrTrial> trials)
    {
        var ok = trials.Where(t => double.IsFinite(t.FinalLoss)).ToList();
        if (ok.Count == 0) throw new MedPeftException($"lr range test: every rate diverged ({string.Join(", ", trials.Select(t => t.LearningRate.ToString("G2")))})");
        return ok.OrderByDescending(t => t.Validation ?? double.NegativeInfinity).ThenBy(t => t.FinalLoss).First().LearningRate;
    }
}
