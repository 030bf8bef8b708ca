using System.Text.Json;
using System.Text.Json.Nodes;

namespace MedPeft.Data;

/// <summary>Reads JSONL (one JSON object per line, blank lines skipped) with one-line errors that name the file and
/// line, and typed field access that names the field.</summary>
public static class JsonLines
{
    public sealed record Line(string Path, int Number, JsonObject Object)
    {
        string Where => $"{Path}: line {Number}";

        /// <summary>A string field; numbers are accepted as their JSON text (VQA-RAD has integer answers).</summary>
        public string? String(string name, bool required = true)
        {
            var node = Object[name];
            if (node is null || node.GetValueKind() == JsonValueKind.Null)
                return required ? throw new MedPeftException($"{Where}: field \"{name}\" missing") : null;
            return node.GetValueKind() switch
            {
                JsonValueKind.String => node.GetValue<string>(),
                JsonValueKind.Number => node.ToJsonString(),
                _ => throw new MedPeftException($"{Where}: field \"{name}\" must be a string"),
            };
        }
    }

    public static IEnumerable<Line> Read(string path)
    {
        if (!File.Exists(path)) throw new MedPeftException($"{path}: file not found");
        int number = 0;
        foreach (var text in File.ReadLines(path))
        {
            number++;
            if (string.IsNullOrWhiteSpace(text)) continue;
            JsonNode? node;
            try { node = JsonNode.Parse(text); }
            catch (JsonException e) { throw new MedPeftException($"{path}: line {number}: invalid JSON ({e.Message.Split('\n')[0]})"); }
            yield return new Line(path, number, node as JsonObject ?? throw new MedPeftException($"{path}: line {number}: expected a JSON object"));
        }
    }
}
