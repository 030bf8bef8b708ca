namespace MedPeft.Evaluation;

/// <summary>
/// The few Python <c>str</c> operations the ported metrics and R2Gen's cleaning rely on, with Python's
/// exact semantics (which differ from .NET's in small ways, spelled out below).
/// </summary>
internal static class PythonStrings
{
    /// <summary>
    /// Python's <c>str.isspace()</c> for one UTF-16 unit. .NET's <see cref="char.IsWhiteSpace(char)"/> covers
    /// the same set except U+001C..U+001F (file/group/record/unit separators), which Python also splits on.
    /// </summary>
    public static bool IsSpace(char c) => char.IsWhiteSpace(c) || c is >= '\x1c' and <= '\x1f';

    /// <summary>
    /// Python's <c>s.split()</c> (no argument): split on runs of whitespace, ignore leading/trailing
    /// whitespace, so <c>""</c> and <c>"  "</c> give no tokens. (Contrast <c>s.Split(' ')</c>, which is
    /// Python's <c>s.split(" ")</c> and keeps empty tokens.)
    /// </summary>
    public static List<string> SplitWhitespace(string s)
    {
        var tokens = new List<string>();
        int i = 0;
        while (i < s.Length)
        {
            while (i < s.Length && IsSpace(s[i])) i++;
            int start = i;
            while (i < s.Length && !IsSpace(s[i])) i++;
            if (i > start) tokens.Add(s[start..i]);
        }
        return tokens;
    }

    /// <summary>Python's <c>s.strip()</c> (no argument): trim Python whitespace from both ends.</summary>
    public static string Strip(string s)
    {
        int start = 0, end = s.Length;
        while (start < end && IsSpace(s[start])) start++;
        while (end > start && IsSpace(s[end - 1])) end--;
        return s[start..end];
    }
}
