using System.Text;
using MedPeft.Evaluation;

namespace MedPeft.Data;

/// <summary>
/// R2Gen's report cleaning (<c>Tokenizer.clean_report_iu_xray</c> / <c>clean_report_mimic_cxr</c> in
/// cuhksz-nlp/R2Gen modules/tokenizers.py), reproduced step for step, quirks included: the output is lower case,
/// sentences are joined by <c>" . "</c> and end with <c>" ."</c>, and it is what the metrics expect as input.
/// One known difference: Python's <c>lower()</c> uses full Unicode case mapping (e.g. U+0130 becomes two
/// characters) where <see cref="string.ToLowerInvariant"/> maps one character to one; ASCII text is unaffected.
/// </summary>
public static class ReportCleaning
{
    public static string CleanIuXray(string report)
    {
        // Python's str.replace replaces every non-overlapping occurrence left to right, like .NET's ordinal
        // Replace; calling it a fixed number of times (not "until stable") is part of the behaviour.
        string t = ReplaceTimes(report, "..", ".", 3);
        return FinishCleaning(t);
    }

    public static string CleanMimicCxr(string report)
    {
        string t = report.Replace("\n", " ");
        t = ReplaceTimes(t, "__", "_", 7);
        t = ReplaceTimes(t, "  ", " ", 6);
        t = ReplaceTimes(t, "..", ".", 8);
        return FinishCleaning(t);
    }

    /// <summary>
    /// The first <paramref name="maxTokens"/> whitespace tokens of a cleaned report, joined by single spaces.
    /// This is the ground truth R2Gen scores against: it keeps <c>[0] + ids + [0]</c> truncated to
    /// <c>max_seq_length</c> and decodes from index 1, so use <c>maxTokens = max_seq_length - 1</c>.
    /// (R2Gen's decode also maps words outside its vocabulary to <c>&lt;unk&gt;</c>; that is not done here.)
    /// </summary>
    public static string Truncate(string cleaned, int maxTokens)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(maxTokens);
        return string.Join(' ', PythonStrings.SplitWhitespace(cleaned).Take(maxTokens));
    }

    /// <summary>The steps both cleaners share after their dataset-specific replacements.</summary>
    private static string FinishCleaning(string t)
    {
        // Numbered lists: "1. " is dropped wherever it occurs (also inside "11. " or "2.1. "); later items become
        // sentence breaks. Order matters: ". 2. " is tried before " 2. ".
        t = t.Replace("1. ", "")
            .Replace(". 2. ", ". ").Replace(". 3. ", ". ").Replace(". 4. ", ". ").Replace(". 5. ", ". ")
            .Replace(" 2. ", ". ").Replace(" 3. ", ". ").Replace(" 4. ", ". ").Replace(" 5. ", ". ");
        string[] sentences = PythonStrings.Strip(t).ToLowerInvariant().Split(". ");
        // R2Gen filters with `if sent_cleaner(sent) != []`, which compares a str with a list and is always true:
        // empty sentences are kept and show up as " .  . " in the output.
        return string.Join(" . ", sentences.Select(CleanSentence)) + " .";
    }

    /// <summary>
    /// R2Gen's <c>sent_cleaner</c>: drop <c>" / \ '</c>, strip, lower, then delete every character of the regex
    /// class <c>[.,?;*!%^&amp;_+():-\[\]{}]</c>. Quirk: inside that class <c>:-\[</c> is a range, U+003A..U+005B, so
    /// <c>: ; &lt; = &gt; ? @ A-Z [</c> are deleted too (so <c>&lt;unk&gt;</c> becomes <c>unk</c>); the hyphen itself is kept.
    /// </summary>
    private static string CleanSentence(string sentence)
    {
        string s = sentence.Replace("\"", "").Replace("/", "").Replace("\\", "").Replace("'", "");
        s = PythonStrings.Strip(s).ToLowerInvariant();
        var kept = new StringBuilder(s.Length);
        foreach (char c in s)
            if (!IsDeleted(c)) kept.Append(c);
        return kept.ToString();
    }

    private static bool IsDeleted(char c) =>
        c is >= ':' and <= '[' || ".,?;*!%^&_+()]{}".Contains(c);

    private static string ReplaceTimes(string s, string oldValue, string newValue, int times)
    {
        for (int i = 0; i < times; i++) s = s.Replace(oldValue, newValue);
        return s;
    }
}
