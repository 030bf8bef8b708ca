namespace MedPeft.Evaluation;

/// <summary>N-gram counting shared by BLEU and CIDEr-D (pycocoevalcap's <c>precook</c>).</summary>
internal static class NGrams
{
    /// <summary>
    /// Counts of every n-gram, n = 1..<paramref name="maxOrder"/>; element [n-1] holds the n-grams.
    /// Keys are the tokens joined by a single space: tokens come from <see cref="PythonStrings.SplitWhitespace"/>
    /// and so contain no whitespace, which makes the joined key unambiguous.
    /// </summary>
    public static Dictionary<string, int>[] Count(IReadOnlyList<string> tokens, int maxOrder)
    {
        var counts = new Dictionary<string, int>[maxOrder];
        for (int n = 1; n <= maxOrder; n++)
        {
            var byGram = new Dictionary<string, int>(StringComparer.Ordinal);
            for (int i = 0; i + n <= tokens.Count; i++)
            {
                string gram = n == 1 ? tokens[i] : string.Join(' ', tokens.Skip(i).Take(n));
                byGram[gram] = byGram.GetValueOrDefault(gram) + 1;
            }
            counts[n - 1] = byGram;
        }
        return counts;
    }
}
