namespace MedPeft.Evaluation;

/// <summary>A corpus score and the per-pair scores it averages.</summary>
public sealed record MetricResult(double Corpus, IReadOnlyList<double> PerExample);

/// <summary>ROUGE-L exactly as pycocoevalcap's <c>Rouge().compute_score</c>.</summary>
public static class RougeL
{
    /// <summary>Recall weight of the F-measure (pycocoevalcap's value, "based on discussion with Hovey").</summary>
    public const double Beta = 1.2;

    public static MetricResult Compute(IReadOnlyList<ReportPair> pairs)
    {
        ReportMetrics.Validate(pairs);
        var scores = pairs.Select(p => Score(p.Candidate, p.References)).ToArray();
        return new MetricResult(scores.Average(), scores);
    }

    /// <summary>ROUGE-L F-measure of one candidate against its references.</summary>
    public static double Score(string candidate, IReadOnlyList<string> references)
    {
        // Unlike BLEU/CIDEr, pycocoevalcap tokenizes with split(" "): every single space separates, so "" is one
        // empty token (never a zero length) and double/leading/trailing spaces produce empty tokens that can match.
        if (references.Count == 0) throw new ArgumentException("at least one reference is needed", nameof(references));
        string[] cand = candidate.Split(' ');
        double precMax = double.NegativeInfinity, recMax = double.NegativeInfinity;
        foreach (var reference in references)
        {
            string[] refTokens = reference.Split(' ');
            int lcs = LcsLength(refTokens, cand);
            // P and R are maximised independently, possibly over different references.
            precMax = Math.Max(precMax, lcs / (double)cand.Length);
            recMax = Math.Max(recMax, lcs / (double)refTokens.Length);
        }

        if (precMax == 0 || recMax == 0) return 0.0;
        const double beta2 = Beta * Beta;
        return (1 + beta2) * precMax * recMax / (recMax + beta2 * precMax);
    }

    /// <summary>Length of the longest common subsequence of two token lists (ordinal token equality).</summary>
    public static int LcsLength(IReadOnlyList<string> a, IReadOnlyList<string> b)
    {
        // One rolling row over b; row[j] = LCS of the a-prefix processed so far and b[..j].
        var row = new int[b.Count + 1];
        foreach (var token in a)
        {
            int diagonal = 0;  // previous row's value at j-1
            for (int j = 1; j <= b.Count; j++)
            {
                int above = row[j];
                row[j] = string.Equals(token, b[j - 1], StringComparison.Ordinal)
                    ? diagonal + 1
                    : Math.Max(above, row[j - 1]);
                diagonal = above;
            }
        }
        return row[b.Count];
    }
}
