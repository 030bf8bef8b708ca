using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;

namespace MedPeft.Experiments;

/// <summary>A mean with its two-sided 95 % Student-t confidence interval over <see cref="N"/> values (seeds);
/// with one value the interval is unknown (NaN bounds).</summary>
public sealed record Interval(double Mean, double Low, double High, int N)
{
    public bool Known => N >= 2 && double.IsFinite(Low);
    public double HalfWidth => Known ? (High - Low) / 2 : double.NaN;

    public static Interval Of(IReadOnlyList<double> values)
    {
        if (values.Count == 0) return new(double.NaN, double.NaN, double.NaN, 0);
        double mean = values.Average();
        if (values.Count < 2) return new(mean, double.NaN, double.NaN, values.Count);
        double half = StudentT.Quantile975(values.Count - 1) * ResultsTables.Std(values) / Math.Sqrt(values.Count);
        return new(mean, mean - half, mean + half, values.Count);
    }

    /// <summary>"53.4 ± 2.1" (half-width of the 95 % CI) or "53.4" for one seed.</summary>
    public string Format(string format) =>
        Known ? $"{Mean.ToString(format, CultureInfo.InvariantCulture)} ± {HalfWidth.ToString(format, CultureInfo.InvariantCulture)}" : Mean.ToString(format, CultureInfo.InvariantCulture);

    /// <summary>"−11.8 [−14.2, −9.4]" (signed mean, 95 % CI) or "−11.8 (1 seed)".</summary>
    public string FormatSigned(string format)
    {
        string S(double x) => (x >= 0 ? "+" : "−") + Math.Abs(x).ToString(format, CultureInfo.InvariantCulture);
        return Known ? $"{S(Mean)} [{S(Low)}, {S(High)}]" : $"{S(Mean)} ({N} seed{(N == 1 ? "" : "s")})";
    }

    public JsonObject ToJson() => new()
    {
        ["mean"] = Num(Mean), ["ci95_low"] = Num(Low), ["ci95_high"] = Num(High), ["n"] = N,
    };

    static JsonNode? Num(double x) => double.IsFinite(x) ? JsonValue.Create(x) : null;
}

/// <summary>Student's t distribution: the 97.5 % quantile (two-sided 95 % intervals).</summary>
public static class StudentT
{
    static readonly double[] Table = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042];

    public static double Quantile975(int degreesOfFreedom)
    {
        if (degreesOfFreedom < 1) throw new ArgumentOutOfRangeException(nameof(degreesOfFreedom));
        if (degreesOfFreedom <= Table.Length) return Table[degreesOfFreedom - 1];
        // Cornish–Fisher expansion around the normal quantile; within 1e-3 of the exact value above 30 degrees of freedom.
        const double z = 1.959964;
        double n = degreesOfFreedom;
        return z + (z * z * z + z) / (4 * n) + (5 * Math.Pow(z, 5) + 16 * z * z * z + 3 * z) / (96 * n * n);
    }
}

/// <summary>The study's statistics over seeds, per task and dataset: each method's primary metric as a mean with a
/// 95 % t-interval, its paired difference to full fine-tuning (same seeds, same test questions; a seed-independent
/// row — zero-shot — is compared with every seed of full), and per-question-family accuracies (Med-VQA).</summary>
public static class StudyStatistics
{
    public const string Reference = "full";

    /// <summary>The metric the claims and differences use: overall accuracy (%) for Med-VQA, BLEU-4 for reports.</summary>
    public static (string Split, string Field) PrimaryMetric(string task) => task == "report" ? ("test", "BLEU_4") : ("test", "overall_acc");

    public sealed record MethodStats(string Task, string Dataset, string Method, string Strategy, long Trainable, long Total, Interval Metric,
        Interval? VersusFull, IReadOnlyDictionary<string, Interval> Families, IReadOnlyList<long> Seeds);

    /// <summary>Per-seed values of a method's metric (by seed), for pairing.</summary>
    public static Dictionary<long, double> BySeed(IEnumerable<StoredRun> runs, string split, string field) =>
        runs.Select(r => (Seed: r.Result["seed"]!.GetValue<long>(), Value: ResultsTables.Number(r.Result["metrics"]?[split]?[field])))
            .Where(x => x.Value is double v && double.IsFinite(v)).GroupBy(x => x.Seed).ToDictionary(g => g.Key, g => g.First().Value!.Value);

    /// <summary>Paired differences a − b over the seeds both have; a seed-independent side (one zero-shot run) is
    /// paired with every seed of the other.</summary>
    public static Interval Paired(Dictionary<long, double> a, Dictionary<long, double> b, bool aConstant = false, bool bConstant = false)
    {
        IEnumerable<long> seeds = aConstant ? b.Keys : bConstant ? a.Keys : a.Keys.Intersect(b.Keys);
        var diffs = seeds.Order().Select(s => (aConstant ? a.Values.First() : a[s]) - (bConstant ? b.Values.First() : b[s])).ToList();
        return Interval.Of(diffs);
    }

    static bool IsZeroShot(IEnumerable<StoredRun> runs) => runs.All(r => r.Result["strategy"]!.GetValue<string>() == StudyStrategy.ZeroShot);

    public static List<MethodStats> Compute(IEnumerable<StoredRun> finished)
    {
        var list = new List<MethodStats>();
        foreach (var group in finished.GroupBy(r => (Task: r.Result["task"]!.GetValue<string>(), Dataset: r.Result["dataset"]!.GetValue<string>())))
        {
            var (split, field) = PrimaryMetric(group.Key.Task);
            var byMethod = group.GroupBy(r => r.Method).ToDictionary(g => g.Key, g => g.OrderBy(r => r.Index).ToList());
            var full = byMethod.TryGetValue(Reference, out var f) ? BySeed(f, split, field) : null;
            foreach (var (method, runs) in byMethod.OrderBy(m => m.Value[0].Index))
            {
                var values = BySeed(runs, split, field);
                Interval? versus = full is null || method == Reference || values.Count == 0 ? null : Paired(values, full, aConstant: IsZeroShot(runs));
                var families = runs.SelectMany(r => r.Result["metrics"]?["families"]?.AsObject() ?? []).Select(p => p.Key).Distinct().Order(StringComparer.Ordinal)
                    .ToDictionary(k => k, k => Interval.Of(BySeed(runs, "families", k).Values.ToList()));
                var first = runs[0].Result;
                list.Add(new MethodStats(group.Key.Task, group.Key.Dataset, method, first["strategy"]!.GetValue<string>(),
                    first["trainable"]!.GetValue<long>(), first["total"]!.GetValue<long>(), Interval.Of(values.Values.ToList()), versus, families,
                    values.Keys.Order().ToList()));
            }
        }
        return list;
    }

    /// <summary>The statistics as JSON (statistics.json and each run's "method_statistics" in results.json).</summary>
    public static JsonObject ToJson(MethodStats s) => new()
    {
        ["task"] = s.Task, ["dataset"] = s.Dataset, ["method"] = s.Method,
        ["metric"] = PrimaryMetric(s.Task).Field,
        ["seeds"] = new JsonArray(s.Seeds.Select(x => (JsonNode)x).ToArray()),
        ["value"] = s.Metric.ToJson(),
        ["difference_to_full"] = s.VersusFull?.ToJson(),
        ["families"] = new JsonObject(s.Families.Select(p => KeyValuePair.Create(p.Key, (JsonNode?)p.Value.ToJson()))),
    };

    /// <summary>Markdown: per task, the primary metric with its interval and the paired difference to full, then the
    /// per-family accuracies (Med-VQA).</summary>
    public static string Markdown(IReadOnlyList<MethodStats> stats)
    {
        var sb = new StringBuilder();
        foreach (var g in stats.GroupBy(s => (s.Task, s.Dataset)))
        {
            var fmt = ResultsTables.MetricFormat(g.Key.Task);
            var metric = PrimaryMetric(g.Key.Task).Field;
            sb.AppendLine($"### {g.Key.Task} · {g.Key.Dataset}: {metric}, mean ± 95 % CI (t-interval over seeds), paired difference to full");
            sb.AppendLine();
            var families = g.SelectMany(s => s.Families.Keys).Distinct().Order(StringComparer.Ordinal).ToList();
            var head = new List<string> { "method", "seeds", metric, "Δ full [95 % CI]" };
            head.AddRange(families);
            sb.AppendLine("| " + string.Join(" | ", head) + " |");
            sb.AppendLine("|" + string.Join("|", head.Select((_, i) => i == 0 ? "---" : "---:")) + "|");
            foreach (var s in g)
            {
                var cells = new List<string> { s.Method.Replace("|", "\\|"), s.Seeds.Count.ToString(CultureInfo.InvariantCulture), s.Metric.Format(fmt), s.VersusFull?.FormatSigned(fmt) ?? "–" };
                cells.AddRange(families.Select(k => s.Families.TryGetValue(k, out var v) ? v.Format("F1") : "–"));
                sb.AppendLine("| " + string.Join(" | ", cells) + " |");
            }
            sb.AppendLine();
        }
        return sb.ToString();
    }
}
