using System.Text.Json.Nodes;
using MedPeft.Data;
using MedPeft.Evaluation;

namespace MedPeft.Experiments;

/// <summary>Per-family accuracies of a Med-VQA split: the SLAKE-layout files of the embedded benchmark carry each
/// question's <c>content_type</c> (Organ, Position, Abnormality, Modality, Size, Quantity, Plane), which tells which
/// skills a method learned or kept.</summary>
public static class QuestionFamilies
{
    /// <summary>qid → content_type of a SLAKE-layout split (questions without one are left out).</summary>
    public static Dictionary<string, string> Read(string slakeRoot, string split)
    {
        var path = SlakeReader.SplitFilePath(slakeRoot, split);
        var map = new Dictionary<string, string>();
        foreach (var q in JsonNode.Parse(File.ReadAllText(path))!.AsArray())
            if (q?["content_type"]?.GetValue<string>() is { Length: > 0 } family && q["qid"] is { } qid)
                map[qid.ToString()] = family;
        return map;
    }

    /// <summary>Exact-match accuracy (%) per family, in ordinal family order.</summary>
    public static JsonObject Accuracies(IEnumerable<VqaPrediction> predictions, IReadOnlyDictionary<string, string> families)
    {
        var groups = predictions.Where(p => families.ContainsKey(p.Id)).GroupBy(p => families[p.Id]).OrderBy(g => g.Key, StringComparer.Ordinal);
        return new JsonObject(groups.Select(g => KeyValuePair.Create(g.Key,
            (JsonNode?)JsonValue.Create(100.0 * g.Count(p => VqaScorer.ExactMatch(p.Answer, p.Prediction)) / g.Count()))));
    }
}
