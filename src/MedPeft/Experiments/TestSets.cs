using MedPeft.Data;

namespace MedPeft.Experiments;

/// <summary>One evaluation set of a cross-dataset evaluation (tune on one dataset, test on several).</summary>
public sealed record TestSet(string Name, string Dir, string Format, string Split)
{
    /// <summary>"DIR:FORMAT[:SPLIT]" (split defaults to test). Parsed from the right, so DIR may itself contain ':'.</summary>
    public static TestSet Parse(string spec)
    {
        var parts = spec.Split(':');
        string? split = null;
        int formatAt = parts.Length - 1;
        if (parts.Length >= 3 && Splits.All.Contains(DatasetFormats.CanonicalSplit(parts[^1])) && IsFormat(parts[^2]))
        {
            split = DatasetFormats.CanonicalSplit(parts[^1]);
            formatAt = parts.Length - 2;
        }
        if (formatAt < 1 || !IsFormat(parts[formatAt]))
            throw new MedPeftException($"--test \"{spec}\": expected DIR:FORMAT[:SPLIT] with FORMAT one of {string.Join(", ", DatasetFormats.Names)}");
        var dir = string.Join(':', parts[..formatAt]);
        if (dir.Length == 0) throw new MedPeftException($"--test \"{spec}\": empty dataset folder");
        var format = DatasetFormats.Get(parts[formatAt]).Name;
        split ??= Splits.Test;
        return new TestSet($"{format}:{split}", dir, format, split);
    }

    static bool IsFormat(string s) => DatasetFormats.Names.Contains(s.Trim().ToLowerInvariant());

    /// <summary>Names made unique: a repeated "format:split" gets its folder name appended ("slake:test@other").</summary>
    public static IReadOnlyList<TestSet> Unique(IEnumerable<TestSet> sets)
    {
        var list = sets.ToList();
        var seen = new HashSet<string>();
        var result = new List<TestSet>();
        foreach (var s in list)
        {
            var name = list.Count(x => x.Name == s.Name) > 1 ? $"{s.Name}@{Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(s.Dir)))}" : s.Name;
            for (int k = 2; !seen.Add(name); k++) name = $"{s.Name}#{k}";
            result.Add(s with { Name = name });
        }
        return result;
    }

    /// <summary>The predictions file of one set when several are evaluated: "preds.jsonl" → "preds.slake-test.jsonl".</summary>
    public static string PredictionsPath(string path, string setName)
    {
        var slug = new string(setName.Select(c => char.IsLetterOrDigit(c) || c is '-' or '_' ? c : '-').ToArray());
        var dir = Path.GetDirectoryName(path) ?? "";
        return Path.Combine(dir, $"{Path.GetFileNameWithoutExtension(path)}.{slug}{Path.GetExtension(path)}");
    }
}
