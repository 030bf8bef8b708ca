using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;

namespace MedPeft.Experiments;

/// <summary>One of the paper's claims checked on a study: the measured difference with its 95 % interval, the
/// threshold it is judged against, and the verdict — <c>supported</c> (the whole interval on the claim's side),
/// <c>not supported</c> (the whole interval on the other side), <c>inconclusive</c> (the interval spans the threshold,
/// or one seed gives no interval), <c>not tested</c> (the study has no rows for it).</summary>
public sealed record Claim(string Id, string Task, string Statement, string Measure, Interval? Difference, double Threshold, string Verdict, string Note);

/// <summary>The paper's claims (Chen et al., 2024) as a table, from the study's statistics. Thresholds (Med-VQA
/// accuracy points; BLEU-4 on reports, scaled by 1/100): "a few points" = 3, "≫" = 5. Per task.</summary>
public static class StudyClaims
{
    public const string Supported = "supported", NotSupported = "not supported", Inconclusive = "inconclusive", NotTested = "not tested";

    /// <summary>Judges "difference ≥ threshold" by its interval.</summary>
    public static string Judge(Interval? d, double threshold) =>
        d is null || d.N == 0 ? NotTested
        : !d.Known ? Inconclusive
        : d.Low >= threshold ? Supported
        : d.High < threshold ? NotSupported
        : Inconclusive;

    public static List<Claim> Evaluate(IReadOnlyList<StudyStatistics.MethodStats> stats, IEnumerable<StoredRun> finished)
    {
        var claims = new List<Claim>();
        var runs = finished.ToList();
        foreach (var g in stats.GroupBy(s => (s.Task, s.Dataset)))
        {
            var task = g.Key.Task;
            double unit = task == "report" ? 0.01 : 1;   // BLEU-4 is on 0–1, accuracy in %
            var (split, field) = StudyStatistics.PrimaryMetric(task);
            var fmt = ResultsTables.MetricFormat(task);
            StudyStatistics.MethodStats? M(string name) => g.FirstOrDefault(s => s.Method == name);
            Dictionary<long, double>? Seeds(string name) =>
                M(name) is null ? null : StudyStatistics.BySeed(runs.Where(r => r.Method == name && r.Result["task"]!.GetValue<string>() == task && r.Result["dataset"]!.GetValue<string>() == g.Key.Dataset), split, field);
            Interval? Diff(string a, string b) => Seeds(a) is { Count: > 0 } x && Seeds(b) is { Count: > 0 } y ? StudyStatistics.Paired(x, y) : null;
            string S(double v) => v.ToString(fmt, CultureInfo.InvariantCulture);

            var ln = M("ln");
            double lnShare = ln is null || ln.Total == 0 ? double.NaN : 100.0 * ln.Trainable / ln.Total;
            var near = ln?.VersusFull;
            var nearVerdict = Judge(near, -3 * unit);
            if (nearVerdict == Supported && !(lnShare < 1)) nearVerdict = NotSupported;
            claims.Add(new Claim("ln-near-full", task, $"LN-tuning is within a few points of full fine-tuning ({S(3 * unit)}) at < 1 % of the parameters",
                $"ln − full, {field}", near, -3 * unit, nearVerdict, double.IsFinite(lnShare) ? $"ln trains {lnShare.ToString("F3", CultureInfo.InvariantCulture)} % of the parameters" : "no ln row"));

            foreach (var other in new[] { "ffn", "attn" })
            {
                var d = Diff("ln", other);
                var o = M(other);
                var ratio = ln is not null && o is not null && ln.Trainable > 0 ? $"{other} trains {(double)o.Trainable / ln.Trainable:F0}× ln's parameters" : "";
                claims.Add(new Claim($"ln-vs-{other}", task, $"LN-tuning is at least as good as {other.ToUpperInvariant()}-tuning (with far fewer parameters)",
                    $"ln − {other}, {field}", d, 0, Judge(d, 0), ratio));
            }

            claims.Add(new Claim("ln-ood-drop", task, "LN-tuning's accuracy drop out of distribution is no larger than full fine-tuning's",
                "(ln OOD drop) − (full OOD drop)", null, 0, NotTested, "the study has no out-of-distribution test split yet"));

            var pre = Diff("full", "full (random init)");
            claims.Add(new Claim("pretrained-vs-random", task, $"Pretraining matters: full fine-tuning from the pretrained model is far (≥ {S(5 * unit)}) above from random init",
                $"full − full (random init), {field}", pre, 5 * unit, Judge(pre, 5 * unit), ""));

            claims.Add(new Claim("ln-gap-scales", task, "LN-tuning's gap to full fine-tuning shrinks as the model grows",
                "gap(large) − gap(small)", null, 0, NotTested, "needs a second model size (opt-in, not implemented yet)"));
        }
        return claims;
    }

    public static JsonArray ToJson(IEnumerable<Claim> claims) => new(claims.Select(c => (JsonNode)new JsonObject
    {
        ["id"] = c.Id, ["task"] = c.Task, ["claim"] = c.Statement, ["measure"] = c.Measure,
        ["difference"] = c.Difference?.ToJson(), ["threshold"] = c.Threshold, ["verdict"] = c.Verdict, ["note"] = c.Note,
    }).ToArray());

    public static string Markdown(IEnumerable<Claim> claims)
    {
        var sb = new StringBuilder();
        sb.AppendLine("### The paper's claims on this study");
        sb.AppendLine();
        sb.AppendLine("Verdict by the 95 % interval of the paired difference (over seeds): supported = the whole interval clears the threshold, not supported = the whole interval misses it, inconclusive = it spans the threshold or there is one seed.");
        sb.AppendLine();
        sb.AppendLine("| task | claim | measured | threshold | verdict | note |");
        sb.AppendLine("|---|---|---:|---:|---|---|");
        foreach (var c in claims)
            sb.AppendLine($"| {c.Task} | {c.Statement} | {Measured(c)} | {(c.Verdict == NotTested ? "–" : c.Threshold.ToString(ResultsTables.MetricFormat(c.Task), CultureInfo.InvariantCulture))} | **{c.Verdict}** | {c.Note} |");
        return sb.ToString();
    }

    public static string Measured(Claim c) =>
        c.Difference is null ? "–" : $"{c.Measure}: {c.Difference.FormatSigned(ResultsTables.MetricFormat(c.Task))}";
}
