namespace MedPeft.Evaluation;

/// <summary>
/// BLEU counts of one pair or of a whole set (summed over pairs).
/// </summary>
/// <param name="TestLength">Candidate tokens.</param>
/// <param name="RefLength">Effective reference length: per pair the 'closest' reference length, for a set the sum.</param>
/// <param name="Guess">Candidate n-grams, n = 1..4 (<c>max(0, testlen - n + 1)</c>).</param>
/// <param name="Correct">Clipped n-gram matches, n = 1..4.</param>
public sealed record BleuCounts(int TestLength, int RefLength, IReadOnlyList<int> Guess, IReadOnlyList<int> Correct);

/// <summary>Result of <see cref="Bleu.Compute"/>.</summary>
/// <param name="Corpus">BLEU-1..4 from the summed counts (index 0 = BLEU-1).</param>
/// <param name="PerExample">[order-1][pair]: BLEU-n of each pair from its own counts.</param>
/// <param name="CorpusCounts">The summed counts.</param>
/// <param name="PerExampleCounts">Each pair's counts.</param>
public sealed record BleuResult(
    IReadOnlyList<double> Corpus,
    IReadOnlyList<IReadOnlyList<double>> PerExample,
    BleuCounts CorpusCounts,
    IReadOnlyList<BleuCounts> PerExampleCounts);

/// <summary>
/// BLEU-1..4 exactly as pycocoevalcap's <c>Bleu(4).compute_score</c> (which calls
/// <c>BleuScorer.compute_score(option='closest')</c>). Tokens are <c>str.split()</c> tokens; no other normalization.
/// </summary>
public static class Bleu
{
    public const int MaxOrder = 4;

    // pycocoevalcap's smoothing: p_n = (correct + Tiny) / (guess + Small). Tiny keeps an order with no
    // guesses at 0 instead of 0/0; but because Tiny/Small = 1e-6, an order with guesses and no match gives a
    // tiny non-zero p_n, and a perfect match gives p_n = c/(c + 1e-9) slightly below 1.
    private const double Small = 1e-9;
    private const double Tiny = 1e-15;

    public static BleuResult Compute(IReadOnlyList<ReportPair> pairs)
    {
        ReportMetrics.Validate(pairs);
        var perExample = new double[MaxOrder][];
        for (int n = 0; n < MaxOrder; n++) perExample[n] = new double[pairs.Count];
        var perCounts = new BleuCounts[pairs.Count];

        int testTotal = 0, refTotal = 0;
        var guessTotal = new int[MaxOrder];
        var correctTotal = new int[MaxOrder];

        for (int i = 0; i < pairs.Count; i++)
        {
            var counts = CountPair(pairs[i].Candidate, pairs[i].References);
            perCounts[i] = counts;
            var scores = Score(counts);
            for (int n = 0; n < MaxOrder; n++)
            {
                perExample[n][i] = scores[n];
                guessTotal[n] += counts.Guess[n];
                correctTotal[n] += counts.Correct[n];
            }
            testTotal += counts.TestLength;
            refTotal += counts.RefLength;
        }

        var corpusCounts = new BleuCounts(testTotal, refTotal, guessTotal, correctTotal);
        return new BleuResult(Score(corpusCounts), perExample, corpusCounts, perCounts);
    }

    /// <summary>pycocoevalcap's <c>cook_refs</c> + <c>cook_test</c> with the 'closest' effective reference length.</summary>
    public static BleuCounts CountPair(string candidate, IReadOnlyList<string> references)
    {
        if (references.Count == 0) throw new ArgumentException("at least one reference is needed", nameof(references));
        // Clipping: each n-gram may match at most as often as it occurs in any single reference.
        var maxRefCounts = new Dictionary<string, int>[MaxOrder];
        for (int n = 0; n < MaxOrder; n++) maxRefCounts[n] = new Dictionary<string, int>(StringComparer.Ordinal);
        var refLengths = new List<int>();
        foreach (var reference in references)
        {
            var tokens = PythonStrings.SplitWhitespace(reference);
            refLengths.Add(tokens.Count);
            var counts = NGrams.Count(tokens, MaxOrder);
            for (int n = 0; n < MaxOrder; n++)
                foreach (var (gram, count) in counts[n])
                    maxRefCounts[n][gram] = Math.Max(maxRefCounts[n].GetValueOrDefault(gram), count);
        }

        var candTokens = PythonStrings.SplitWhitespace(candidate);
        int testLength = candTokens.Count;
        var candCounts = NGrams.Count(candTokens, MaxOrder);
        var guess = new int[MaxOrder];
        var correct = new int[MaxOrder];
        for (int n = 0; n < MaxOrder; n++)
        {
            guess[n] = Math.Max(0, testLength - n);  // testlen - k + 1 with k = n + 1
            foreach (var (gram, count) in candCounts[n])
                correct[n] += Math.Min(maxRefCounts[n].GetValueOrDefault(gram), count);
        }

        return new BleuCounts(testLength, ClosestRefLength(refLengths, testLength), guess, correct);
    }

    /// <summary>
    /// 'closest': the reference length nearest the candidate length; on a tie the shorter reference wins
    /// (Python's <c>min((abs(l - testlen), l) for l in reflens)[1]</c> compares the tuples lexicographically).
    /// </summary>
    public static int ClosestRefLength(IReadOnlyList<int> refLengths, int testLength)
    {
        int best = refLengths[0];
        foreach (int len in refLengths)
        {
            int d = Math.Abs(len - testLength), bestD = Math.Abs(best - testLength);
            if (d < bestD || (d == bestD && len < best)) best = len;
        }
        return best;
    }

    /// <summary>BLEU-1..4 from counts: cumulative geometric mean of the smoothed precisions times the brevity penalty.</summary>
    public static double[] Score(BleuCounts counts)
    {
        var bleus = new double[MaxOrder];
        double product = 1.0;
        for (int n = 0; n < MaxOrder; n++)
        {
            product *= (counts.Correct[n] + Tiny) / (counts.Guess[n] + Small);
            bleus[n] = Math.Pow(product, 1.0 / (n + 1));
        }

        // Brevity penalty, smoothed the same way so an empty candidate (or reference) never divides by zero:
        // an empty candidate gets ratio 1e-6 and exp(1 - 1e6) underflows to exactly 0.
        double ratio = (counts.TestLength + Tiny) / (counts.RefLength + Small);
        if (ratio < 1)
        {
            double penalty = Math.Exp(1 - 1 / ratio);
            for (int n = 0; n < MaxOrder; n++) bleus[n] *= penalty;
        }
        return bleus;
    }
}
