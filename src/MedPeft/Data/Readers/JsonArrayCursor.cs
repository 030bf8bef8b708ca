using System.Text.Json;

namespace MedPeft.Data;

/// <summary>
/// Streams the elements of one JSON array out of a file without loading the file: either the
/// top-level array (SLAKE, VQA-RAD, PathVQA) or the array under one key of the top-level object
/// (R2Gen's <c>{"train": [...], "val": [...], "test": [...]}</c>). Only one element is held in
/// memory at a time, so MIMIC-CXR's ~280k-entry annotation file reads in constant memory.
/// </summary>
/// <remarks>
/// Built on <see cref="Utf8JsonReader"/> over a refillable buffer: tokens are read one at a time
/// (so skipping a huge sibling array costs no memory), and the bytes of the current element are
/// kept until the element is complete, then parsed by <see cref="JsonDocument"/>. Syntax errors
/// become one-line <see cref="MedPeftException"/>s naming the file label, the record and the
/// line/column where the parser stopped.
/// </remarks>
internal sealed class JsonArrayCursor : IDisposable
{
    private const int InitialBufferSize = 64 * 1024;

    private readonly Stream _stream;
    private readonly string _label;
    private readonly bool _topLevel;
    private byte[] _buf = new byte[InitialBufferSize];
    private int _end;          // valid bytes are _buf[0.._end)
    private int _pos;          // the next token starts at or after _buf[_pos]
    private int _keep = -1;    // >= 0 while an element is captured: bytes from here on survive a refill
    private bool _final;       // the stream is exhausted
    private JsonReaderState _state;
    private int _arrayDepth;   // depth of the array's own StartArray token
    private bool _done;
    private bool _capturing;
    private JsonDocument? _current;
    private string _record = "record"; // how records are named in messages ("record", "\"train\" record")

    /// <summary>Index (from 0) of the element last returned by <see cref="MoveNext"/>; -1 before the first.</summary>
    public int Index { get; private set; } = -1;

    private JsonArrayCursor(string path, string label, bool topLevel)
    {
        _label = label;
        _topLevel = topLevel;
        try
        {
            _stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1, FileOptions.SequentialScan);
        }
        catch (FileNotFoundException)
        {
            throw new MedPeftException($"{label}: file not found ({path})");
        }
        catch (DirectoryNotFoundException)
        {
            throw new MedPeftException($"{label}: file not found ({path})");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new MedPeftException($"{label}: cannot open {path}: {OneLine(e.Message)}");
        }
        try
        {
            Refill();
            if (_end >= 3 && _buf[0] == 0xEF && _buf[1] == 0xBB && _buf[2] == 0xBF) _pos = 3; // UTF-8 BOM
        }
        catch
        {
            _stream.Dispose();
            throw;
        }
    }

    /// <summary>Opens a file whose top-level value must be an array.</summary>
    public static JsonArrayCursor OpenTopLevelArray(string path, string label)
    {
        var c = new JsonArrayCursor(path, label, topLevel: true);
        try
        {
            var t = c.ReadToken(wantName: false);
            if (t.Type != JsonTokenType.StartArray)
                throw new MedPeftException($"{label}: expected a JSON array of records at the top level, found {Describe(t.Type)}");
            c._arrayDepth = t.Depth;
            return c;
        }
        catch
        {
            c.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Opens a file whose top-level value must be an object, and positions on the array under
    /// <paramref name="key"/> (skipping, token by token, the values of the keys before it).
    /// </summary>
    public static JsonArrayCursor OpenArrayUnderKey(string path, string label, string key)
    {
        var c = new JsonArrayCursor(path, label, topLevel: false);
        try
        {
            var t = c.ReadToken(wantName: false);
            if (t.Type != JsonTokenType.StartObject)
                throw new MedPeftException($"{label}: expected a JSON object at the top level, found {Describe(t.Type)}");
            var seen = new List<string>();
            while (true)
            {
                t = c.ReadToken(wantName: true);
                if (t.Type == JsonTokenType.EndObject)
                {
                    string keys = seen.Count == 0 ? "none" : string.Join(", ", seen.Select(k => JsonSerializer.Serialize(k)));
                    throw new MedPeftException($"{label}: key \"{key}\" missing (top-level keys: {keys})");
                }
                if (t.Type != JsonTokenType.PropertyName)
                    throw new MedPeftException($"{label}: unexpected end of file while looking for key \"{key}\"");
                string name = t.Name!;
                var value = c.ReadToken(wantName: false);
                if (name == key)
                {
                    if (value.Type != JsonTokenType.StartArray)
                        throw new MedPeftException($"{label}: key \"{key}\" must hold an array of records, found {Describe(value.Type)}");
                    c._arrayDepth = value.Depth;
                    c._record = $"\"{key}\" record";
                    return c;
                }
                seen.Add(name);
                if (value.Type is JsonTokenType.StartObject or JsonTokenType.StartArray) c.SkipRest(value.Depth);
            }
        }
        catch
        {
            c.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Moves to the next element. The returned element is valid only until the next call (its
    /// document is disposed then), so callers convert it before asking for the next one.
    /// </summary>
    public bool MoveNext(out JsonElement element)
    {
        _current?.Dispose();
        _current = null;
        element = default;
        if (_done) return false;

        var t = ReadToken(wantName: false);
        if (t.Type == JsonTokenType.EndArray && t.Depth == _arrayDepth)
        {
            _done = true;
            if (_topLevel)
            {
                var after = ReadToken(wantName: false); // throws on trailing garbage
                if (after.Type != JsonTokenType.None)
                    throw new MedPeftException($"{_label}: unexpected content after the top-level array");
            }
            return false;
        }
        if (t.Type == JsonTokenType.None)
            throw new MedPeftException($"{_label}: unexpected end of file after {_record} {Index}");

        Index++;
        int start = t.Start;
        if (t.Type is JsonTokenType.StartObject or JsonTokenType.StartArray)
        {
            _keep = start;
            _capturing = true;
            SkipRest(t.Depth);
            _capturing = false;
            start = _keep;
            _keep = -1;
        }
        try
        {
            _current = JsonDocument.Parse(_buf.AsMemory(start, _pos - start));
        }
        catch (JsonException e)
        {
            throw new MedPeftException($"{_label}: malformed JSON in {_record} {Index}: {CleanMessage(e)}");
        }
        element = _current.RootElement;
        return true;
    }

    public void Dispose()
    {
        _current?.Dispose();
        _current = null;
        _stream.Dispose();
    }

    /// <summary>Reads tokens until the End token that closes the container opened at <paramref name="depth"/>.</summary>
    private void SkipRest(int depth)
    {
        while (true)
        {
            var u = ReadToken(wantName: false);
            if (u.Type is JsonTokenType.EndObject or JsonTokenType.EndArray && u.Depth == depth) return;
            if (u.Type == JsonTokenType.None)
                throw new MedPeftException($"{_label}: unexpected end of file{(_capturing ? $" in {_record} {Index}" : "")}");
        }
    }

    private readonly record struct Token(JsonTokenType Type, int Start, int Depth, string? Name);

    private Token ReadToken(bool wantName)
    {
        while (true)
        {
            var reader = new Utf8JsonReader(_buf.AsSpan(_pos, _end - _pos), _final, _state);
            bool ok;
            try
            {
                ok = reader.Read();
            }
            catch (JsonException e)
            {
                throw Malformed(e);
            }
            if (ok)
            {
                string? name = wantName && reader.TokenType == JsonTokenType.PropertyName ? reader.GetString() : null;
                var token = new Token(reader.TokenType, _pos + (int)reader.TokenStartIndex, reader.CurrentDepth, name);
                _pos += (int)reader.BytesConsumed;
                _state = reader.CurrentState;
                return token;
            }
            if (_final) return new Token(JsonTokenType.None, _pos, 0, null);
            Refill();
        }
    }

    /// <summary>Drops consumed bytes (keeping a captured element), grows the buffer if full, reads more.</summary>
    private void Refill()
    {
        int keep = _keep >= 0 ? Math.Min(_keep, _pos) : _pos;
        if (keep > 0)
        {
            Buffer.BlockCopy(_buf, keep, _buf, 0, _end - keep);
            _end -= keep;
            _pos -= keep;
            if (_keep >= 0) _keep -= keep;
        }
        if (_end == _buf.Length) Array.Resize(ref _buf, checked(_buf.Length * 2));
        int n;
        try
        {
            n = _stream.Read(_buf, _end, _buf.Length - _end);
        }
        catch (IOException e)
        {
            throw new MedPeftException($"{_label}: read error: {OneLine(e.Message)}");
        }
        if (n == 0) _final = true;
        else _end += n;
    }

    private MedPeftException Malformed(JsonException e)
    {
        string where = _capturing ? $" in {_record} {Index}" : Index >= 0 ? $" after {_record} {Index}" : "";
        string at = e.LineNumber is long line && e.BytePositionInLine is long col
            ? $" (line {line + 1}, byte {col + 1} of the line)"
            : "";
        return new MedPeftException($"{_label}: malformed JSON{where}{at}: {CleanMessage(e)}");
    }

    private static string CleanMessage(JsonException e)
    {
        string m = OneLine(e.Message);
        int i = m.IndexOf(" LineNumber:", StringComparison.Ordinal);
        if (i >= 0) m = m[..i];
        return m.TrimEnd();
    }

    internal static string OneLine(string s) => s.ReplaceLineEndings(" ").Trim();

    private static string Describe(JsonTokenType t) => t switch
    {
        JsonTokenType.StartObject => "an object",
        JsonTokenType.StartArray => "an array",
        JsonTokenType.String => "a string",
        JsonTokenType.Number => "a number",
        JsonTokenType.True or JsonTokenType.False => "a boolean",
        JsonTokenType.Null => "null",
        JsonTokenType.None => "an empty file",
        _ => t.ToString(),
    };
}
