namespace MedPeft.Evaluation;

/// <summary>One generated report and its reference report(s), already cleaned/tokenized (R2Gen's form).</summary>
public sealed record ReportPair(string Id, string Candidate, IReadOnlyList<string> References);

/// <summary>All metrics of one pair. Note that CIDEr-D depends on the whole evaluated set (its idf).</summary>
public sealed record ExampleScores(
    string Id,
    double Bleu1, double Bleu2, double Bleu3, double Bleu4,
    double RougeL, double Cider, double? Meteor,
    BleuCounts BleuCounts);

/// <summary>Corpus scores of a set of pairs (what pycocoevalcap's scorers return first), plus per-pair scores.</summary>
public sealed record ReportScores(
    double Bleu1, double Bleu2, double Bleu3, double Bleu4,
    double RougeL, double Cider,
    double? Meteor, string? MeteorNote,
    BleuCounts BleuCorpusCounts,
    IReadOnlyList<ExampleScores> PerExample)
{
    /// <summary>Corpus scores keyed BLEU_1..BLEU_4, ROUGE_L, CIDEr, and METEOR only when it was computed.</summary>
    public Dictionary<string, double> ToDictionary()
    {
        var d = new Dictionary<string, double>
        {
            [ReportMetrics.Bleu1Key] = Bleu1,
            [ReportMetrics.Bleu2Key] = Bleu2,
            [ReportMetrics.Bleu3Key] = Bleu3,
            [ReportMetrics.Bleu4Key] = Bleu4,
            [ReportMetrics.RougeLKey] = RougeL,
            [ReportMetrics.CiderKey] = Cider,
        };
        if (Meteor is double m) d[ReportMetrics.MeteorKey] = m;
        return d;
    }

    /// <summary>Per-pair scores in the fixtures' <c>per_example</c> shape: metric key → one value per pair, in order.</summary>
    public Dictionary<string, double[]> ToPerExampleDictionary()
    {
        var d = new Dictionary<string, double[]>
        {
            [ReportMetrics.Bleu1Key] = PerExample.Select(e => e.Bleu1).ToArray(),
            [ReportMetrics.Bleu2Key] = PerExample.Select(e => e.Bleu2).ToArray(),
            [ReportMetrics.Bleu3Key] = PerExample.Select(e => e.Bleu3).ToArray(),
            [ReportMetrics.Bleu4Key] = PerExample.Select(e => e.Bleu4).ToArray(),
            [ReportMetrics.RougeLKey] = PerExample.Select(e => e.RougeL).ToArray(),
            [ReportMetrics.CiderKey] = PerExample.Select(e => e.Cider).ToArray(),
        };
        if (Meteor is not null) d[ReportMetrics.MeteorKey] = PerExample.Select(e => e.Meteor!.Value).ToArray();
        return d;
    }
}

/// <summary>
/// Report-generation metrics as R2Gen reports them with pycocoevalcap (BLEU-1..4, ROUGE-L; CIDEr-D added),
/// plus METEOR when a real meteor-1.5.jar can be run. Inputs are used verbatim: clean them first
/// (see <see cref="MedPeft.Data.ReportCleaning"/>); no PTB tokenizer, no lowercasing.
/// </summary>
public static class ReportMetrics
{
    public const string Bleu1Key = "BLEU_1", Bleu2Key = "BLEU_2", Bleu3Key = "BLEU_3", Bleu4Key = "BLEU_4";
    public const string RougeLKey = "ROUGE_L", CiderKey = "CIDEr", MeteorKey = "METEOR";

    public static ReportScores Compute(IReadOnlyList<ReportPair> pairs, MeteorOptions? meteor = null)
    {
        Validate(pairs);
        var bleu = Bleu.Compute(pairs);
        var rouge = RougeL.Compute(pairs);
        var cider = CiderD.Compute(pairs);
        var met = Meteor.Compute(pairs, meteor);

        var perExample = pairs.Select((p, i) => new ExampleScores(
            p.Id,
            bleu.PerExample[0][i], bleu.PerExample[1][i], bleu.PerExample[2][i], bleu.PerExample[3][i],
            rouge.PerExample[i], cider.PerExample[i], met.PerExample?[i],
            bleu.PerExampleCounts[i])).ToList();

        return new ReportScores(
            bleu.Corpus[0], bleu.Corpus[1], bleu.Corpus[2], bleu.Corpus[3],
            rouge.Corpus, cider.Corpus, met.Score, met.Note, bleu.CorpusCounts, perExample);
    }

    /// <summary>pycocoevalcap asserts these; a set must be non-empty and every pair needs a reference.</summary>
    internal static void Validate(IReadOnlyList<ReportPair> pairs)
    {
        if (pairs.Count == 0) throw new MedPeftException("no report pairs to score");
        foreach (var p in pairs)
        {
            if (p.Candidate is null) throw new MedPeftException($"report pair '{p.Id}' has no candidate");
            if (p.References is null || p.References.Count == 0 || p.References.Any(r => r is null))
                throw new MedPeftException($"report pair '{p.Id}' needs at least one reference and no null references");
        }
    }
}
