using System.Globalization;
using System.Text.Json;

namespace MedPeft.Data;

/// <summary>
/// Field access for one JSON record with the project's one-line errors:
/// <c>{label}: {where}: field "answer" missing</c>, e.g. <c>SLAKE train.json: record 12: field "answer" missing</c>.
/// Records are looked up by key, so key order never matters and extra keys are ignored.
/// </summary>
internal readonly struct RecordFields
{
    private readonly JsonElement _rec;
    private readonly string _label;
    private readonly string _where;

    /// <param name="rec">The record; it must be a JSON object.</param>
    /// <param name="label">Dataset and file, e.g. <c>SLAKE train.json</c>.</param>
    /// <param name="where">The record, e.g. <c>record 12</c> or <c>"train" record 3</c> (index from 0).</param>
    public RecordFields(JsonElement rec, string label, string where)
    {
        _rec = rec;
        _label = label;
        _where = where;
        if (rec.ValueKind != JsonValueKind.Object)
            throw Fail($"expected a JSON object, found {Kind(rec.ValueKind)}");
    }

    public MedPeftException Fail(string what) => new($"{_label}: {_where}: {what}");

    /// <summary>The field's value; missing or null is an error.</summary>
    public JsonElement Required(string field)
    {
        if (!_rec.TryGetProperty(field, out var v)) throw Fail($"field \"{field}\" missing");
        if (v.ValueKind == JsonValueKind.Null) throw Fail($"field \"{field}\" is null");
        return v;
    }

    /// <summary>A required JSON string.</summary>
    public string String(string field)
    {
        var v = Required(field);
        if (v.ValueKind != JsonValueKind.String) throw Fail($"field \"{field}\" must be a string, found {Kind(v.ValueKind)}");
        return v.GetString()!;
    }

    /// <summary>A required string or number; numbers become their invariant text (<c>2</c> → "2").</summary>
    public string Text(string field) => TextOf(field, Required(field));

    /// <summary>An optional string or number: missing or null gives null.</summary>
    public string? OptionalText(string field)
    {
        if (!_rec.TryGetProperty(field, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        return TextOf(field, v);
    }

    /// <summary>True when the field exists and is not null.</summary>
    public bool Has(string field) => _rec.TryGetProperty(field, out var v) && v.ValueKind != JsonValueKind.Null;

    /// <summary>A required list of strings; a lone string is accepted as a list of one.</summary>
    public List<string> StringList(string field)
    {
        var v = Required(field);
        if (v.ValueKind == JsonValueKind.String) return [v.GetString()!];
        if (v.ValueKind != JsonValueKind.Array) throw Fail($"field \"{field}\" must be an array of strings, found {Kind(v.ValueKind)}");
        var list = new List<string>(v.GetArrayLength());
        int i = 0;
        foreach (var item in v.EnumerateArray())
        {
            if (item.ValueKind != JsonValueKind.String)
                throw Fail($"field \"{field}\"[{i}] must be a string, found {Kind(item.ValueKind)}");
            list.Add(item.GetString()!);
            i++;
        }
        if (list.Count == 0) throw Fail($"field \"{field}\" is empty");
        return list;
    }

    private string TextOf(string field, JsonElement v) => v.ValueKind switch
    {
        JsonValueKind.String => v.GetString()!,
        // Python's str(int) for integers; other numbers keep their JSON spelling (1.5 → "1.5").
        JsonValueKind.Number => v.TryGetInt64(out long l) ? l.ToString(CultureInfo.InvariantCulture) : v.GetRawText(),
        _ => throw Fail($"field \"{field}\" must be a string or a number, found {Kind(v.ValueKind)}"),
    };

    internal static string Kind(JsonValueKind k) => k switch
    {
        JsonValueKind.Object => "an object",
        JsonValueKind.Array => "an array",
        JsonValueKind.String => "a string",
        JsonValueKind.Number => "a number",
        JsonValueKind.True or JsonValueKind.False => "a boolean",
        JsonValueKind.Null => "null",
        _ => k.ToString(),
    };
}

/// <summary>Small path and text helpers shared by the readers.</summary>
internal static class ReaderPaths
{
    /// <summary>The absolute path of <paramref name="relative"/> (forward or back slashes) under <paramref name="dir"/>; the file is not touched.</summary>
    public static string Under(string dir, string relative)
    {
        string rel = relative.Replace('\\', '/');
        if (Path.DirectorySeparatorChar != '/') rel = rel.Replace('/', Path.DirectorySeparatorChar);
        return Path.GetFullPath(Path.Combine(dir, rel));
    }

    public static void RequireDirectory(string dataset, string root)
    {
        if (string.IsNullOrWhiteSpace(root)) throw new MedPeftException($"{dataset}: no dataset folder given");
        if (!Directory.Exists(root)) throw new MedPeftException($"{dataset}: dataset folder not found: {root}");
    }

    /// <summary>Upper-cased, trimmed answer type; empty becomes null.</summary>
    public static string? AnswerType(string? raw)
    {
        if (raw is null) return null;
        string t = raw.Trim().ToUpperInvariant();
        return t.Length == 0 ? null : t;
    }
}
