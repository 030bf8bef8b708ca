namespace MedPeft.Evaluation;

/// <summary>
/// CIDEr-D exactly as pycocoevalcap's <c>Cider().compute_score</c> (n = 4, sigma = 6). The idf comes from the
/// references of the evaluated set itself, so a pair's score depends on every other pair in the set.
/// </summary>
public static class CiderD
{
    public const int MaxOrder = 4;
    public const double Sigma = 6.0;

    public static MetricResult Compute(IReadOnlyList<ReportPair> pairs)
    {
        ReportMetrics.Validate(pairs);
        var candidates = pairs.Select(p => NGrams.Count(PythonStrings.SplitWhitespace(p.Candidate), MaxOrder)).ToList();
        var references = pairs
            .Select(p => p.References.Select(r => NGrams.Count(PythonStrings.SplitWhitespace(r), MaxOrder)).ToList())
            .ToList();

        // Document frequency: in how many pairs' reference sets (union over the pair's references) each n-gram occurs.
        var df = new Dictionary<string, int>[MaxOrder];
        for (int n = 0; n < MaxOrder; n++)
        {
            df[n] = new Dictionary<string, int>(StringComparer.Ordinal);
            foreach (var refs in references)
                foreach (var gram in refs.SelectMany(r => r[n].Keys).Distinct(StringComparer.Ordinal))
                    df[n][gram] = df[n].GetValueOrDefault(gram) + 1;
        }

        // idf = log N - log max(1, df): unseen candidate n-grams get log N; n-grams in every pair's references get
        // 0, so with N = 1 (or identical references everywhere) every weight and every score is 0.
        double logN = Math.Log(pairs.Count);
        TfIdf Vectorize(Dictionary<string, int>[] counts)
        {
            var weights = new Dictionary<string, double>[MaxOrder];
            var norms = new double[MaxOrder];
            for (int n = 0; n < MaxOrder; n++)
            {
                weights[n] = new Dictionary<string, double>(StringComparer.Ordinal);
                double sumSquares = 0;
                foreach (var (gram, tf) in counts[n])
                {
                    double w = tf * (logN - Math.Log(Math.Max(1, df[n].GetValueOrDefault(gram))));
                    weights[n][gram] = w;
                    sumSquares += w * w;
                }
                norms[n] = Math.Sqrt(sumSquares);
            }
            // pycocoevalcap's "length" is the number of bigrams (it sums term frequencies of order index 1),
            // i.e. tokens - 1 for a non-empty string and 0 for an empty one.
            int length = counts[1].Values.Sum();
            return new TfIdf(weights, norms, length);
        }

        var scores = new double[pairs.Count];
        for (int i = 0; i < pairs.Count; i++)
        {
            var cand = Vectorize(candidates[i]);
            var sumOverRefs = new double[MaxOrder];
            foreach (var refCounts in references[i])
            {
                var sim = Similarity(cand, Vectorize(refCounts));
                for (int n = 0; n < MaxOrder; n++) sumOverRefs[n] += sim[n];
            }
            // Mean over the orders, then average over the references, then the conventional x10.
            scores[i] = sumOverRefs.Sum() / MaxOrder / references[i].Count * 10.0;
        }
        return new MetricResult(scores.Average(), scores);
    }

    private sealed record TfIdf(Dictionary<string, double>[] Weights, double[] Norms, int Length);

    /// <summary>Clipped cosine similarity per order, times the Gaussian length penalty (the "-D" of CIDEr-D).</summary>
    private static double[] Similarity(TfIdf cand, TfIdf reference)
    {
        double delta = cand.Length - reference.Length;
        double penalty = Math.Exp(-(delta * delta) / (2 * Sigma * Sigma));
        var val = new double[MaxOrder];
        for (int n = 0; n < MaxOrder; n++)
        {
            foreach (var (gram, wc) in cand.Weights[n])
            {
                // Clipping: a candidate weight above the reference's counts only up to the reference's weight.
                double wr = reference.Weights[n].GetValueOrDefault(gram);
                val[n] += Math.Min(wc, wr) * wr;
            }
            // Only normalized when both vectors are non-zero (otherwise the dot product is 0 anyway).
            if (cand.Norms[n] != 0 && reference.Norms[n] != 0)
                val[n] /= cand.Norms[n] * reference.Norms[n];
            val[n] *= penalty;
        }
        return val;
    }
}
