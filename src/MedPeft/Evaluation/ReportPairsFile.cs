using System.Text.Json;

namespace MedPeft.Evaluation;

/// <summary>
/// Reads the pairs for <c>medpeft score report FILE</c>. FILE is either one JSON object with a <c>"pairs"</c>
/// array (the metric fixtures' format; other top-level fields are ignored) or JSONL: one
/// <c>{"id", "candidate", "references": [...]}</c> object per line (blank lines skipped). <c>id</c> (string or
/// number) is optional and defaults to the pair's 0-based position, as R2Gen's <c>enumerate</c> keys; unknown
/// fields are ignored. Every problem is a <see cref="MedPeftException"/> naming the file and the line or field.
/// </summary>
public static class ReportPairsFile
{
    /// <summary>Writes <c>{"pairs": [{"id", "candidate", "references"}]}</c> atomically (what <see cref="Load"/> and
    /// <c>medpeft score report</c> read).</summary>
    public static void Save(string path, IEnumerable<ReportPair> pairs)
    {
        var array = new System.Text.Json.Nodes.JsonArray();
        foreach (var p in pairs)
            array.Add(new System.Text.Json.Nodes.JsonObject
            {
                ["id"] = p.Id, ["candidate"] = p.Candidate,
                ["references"] = new System.Text.Json.Nodes.JsonArray(p.References.Select(r => (System.Text.Json.Nodes.JsonNode)r).ToArray()),
            });
        AtomicFile.WriteAllText(path, new System.Text.Json.Nodes.JsonObject { ["pairs"] = array }.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
    }

    public static IReadOnlyList<ReportPair> Load(string path)
    {
        if (!File.Exists(path)) throw new MedPeftException($"{path}: file not found");
        string text;
        try { text = File.ReadAllText(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new MedPeftException($"{path}: cannot read the file ({OneLine(e.Message)})");
        }

        if (string.IsNullOrWhiteSpace(text)) throw new MedPeftException($"{path}: the file is empty (no report pairs)");

        // One whole JSON document → the {"pairs": [...]} format (or a one-line JSONL file).
        // Not one document → JSONL if its first line is an object by itself, else report the document's error.
        JsonDocument? whole = null;
        JsonException? wholeError = null;
        try { whole = JsonDocument.Parse(text); }
        catch (JsonException e) { wholeError = e; }

        List<ReportPair> pairs;
        if (whole is not null)
        {
            using (whole)
            {
                var root = whole.RootElement;
                if (root.ValueKind == JsonValueKind.Object && root.TryGetProperty("pairs", out var array))
                    pairs = ReadPairsArray(path, array);
                else if (root.ValueKind == JsonValueKind.Object)
                    pairs = ReadJsonl(path, text);
                else
                    throw new MedPeftException($"{path}: expected an object with a \"pairs\" array, or JSONL with one object per line");
            }
        }
        else if (FirstLineIsObject(text))
            pairs = ReadJsonl(path, text);
        else
            throw new MedPeftException($"{path}: invalid JSON at line {wholeError!.LineNumber + 1}: {Reason(wholeError)}");

        if (pairs.Count == 0) throw new MedPeftException($"{path}: no report pairs");
        return pairs;
    }

    private static List<ReportPair> ReadPairsArray(string path, JsonElement array)
    {
        if (array.ValueKind != JsonValueKind.Array) throw new MedPeftException($"{path}: \"pairs\" must be an array");
        var pairs = new List<ReportPair>();
        var ids = new HashSet<string>(StringComparer.Ordinal);
        int i = 0;
        foreach (var item in array.EnumerateArray())
        {
            pairs.Add(ReadPair(item, i, ids, where: $"{path}: pairs[{i}]"));
            i++;
        }
        return pairs;
    }

    private static List<ReportPair> ReadJsonl(string path, string text)
    {
        var pairs = new List<ReportPair>();
        var ids = new HashSet<string>(StringComparer.Ordinal);
        string[] lines = text.Split('\n');
        for (int n = 0; n < lines.Length; n++)
        {
            string line = lines[n].TrimEnd('\r');
            if (line.Trim().Length == 0) continue;
            string where = $"{path}: line {n + 1}";
            JsonDocument doc;
            try { doc = JsonDocument.Parse(line); }
            catch (JsonException e) { throw new MedPeftException($"{where}: invalid JSON: {Reason(e)}"); }
            using (doc) pairs.Add(ReadPair(doc.RootElement, pairs.Count, ids, where));
        }
        return pairs;
    }

    private static ReportPair ReadPair(JsonElement item, int index, HashSet<string> ids, string where)
    {
        if (item.ValueKind != JsonValueKind.Object) throw new MedPeftException($"{where}: expected a JSON object");

        string id = index.ToString(System.Globalization.CultureInfo.InvariantCulture);
        if (item.TryGetProperty("id", out var idElement))
        {
            id = idElement.ValueKind switch
            {
                JsonValueKind.String => idElement.GetString()!,
                JsonValueKind.Number => idElement.GetRawText(),
                _ => throw new MedPeftException($"{where}: field \"id\" must be a string or a number"),
            };
        }
        if (!ids.Add(id)) throw new MedPeftException($"{where}: duplicate id \"{id}\"");

        if (!item.TryGetProperty("candidate", out var cand))
            throw new MedPeftException($"{where}: missing field \"candidate\"");
        if (cand.ValueKind != JsonValueKind.String)
            throw new MedPeftException($"{where}: field \"candidate\" must be a string");

        if (!item.TryGetProperty("references", out var refs))
            throw new MedPeftException($"{where}: missing field \"references\"");
        if (refs.ValueKind != JsonValueKind.Array || refs.GetArrayLength() == 0)
            throw new MedPeftException($"{where}: field \"references\" must be a non-empty array of strings");
        var references = new List<string>();
        int r = 0;
        foreach (var reference in refs.EnumerateArray())
        {
            if (reference.ValueKind != JsonValueKind.String)
                throw new MedPeftException($"{where}: references[{r}] must be a string");
            references.Add(reference.GetString()!);
            r++;
        }
        return new ReportPair(id, cand.GetString()!, references);
    }

    private static bool FirstLineIsObject(string text)
    {
        string? first = text.Split('\n').Select(l => l.Trim()).FirstOrDefault(l => l.Length > 0);
        if (first is null || !first.StartsWith('{')) return false;
        try
        {
            using var doc = JsonDocument.Parse(first);
            return doc.RootElement.ValueKind == JsonValueKind.Object;
        }
        catch (JsonException) { return false; }
    }

    /// <summary>System.Text.Json's reason without its " Path: … | LineNumber: … | BytePositionInLine: …" suffix.</summary>
    private static string Reason(JsonException e)
    {
        string m = OneLine(e.Message);
        int cut = m.IndexOf(" LineNumber:", StringComparison.Ordinal);
        if (cut < 0) cut = m.IndexOf(" Path:", StringComparison.Ordinal);
        return (cut >= 0 ? m[..cut] : m).TrimEnd(' ', '|', '.') + (e.BytePositionInLine is long b ? $" (byte {b + 1})" : "");
    }

    private static string OneLine(string s) => s.ReplaceLineEndings(" ");
}
