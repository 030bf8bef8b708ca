using System.Globalization;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using System.Text.Json.Serialization.Metadata;

namespace MedPeft.Tuning;

/// <summary>PEFT's PeftConfig (0.11): the fields every adapter_config.json carries. Each method's config record derives
/// from it and adds its own fields; C# property names map to PEFT's field names by snake_case (LoraAlpha → lora_alpha),
/// so a config is written and read by <see cref="PeftConfigJson"/> with no per-type code. Properties that are not PEFT
/// fields are [JsonIgnore].</summary>
public abstract record PeftConfig
{
    /// <summary>PEFT's peft_type (written; chosen by the record type on reading).</summary>
    public abstract string PeftType { get; }
    public string? TaskType { get; init; }
    public string BaseModelNameOrPath { get; init; } = "";
    public string? Revision { get; init; }
    public bool InferenceMode { get; init; } = true;
    public JsonElement? AutoMapping { get; init; }

    /// <summary>Fields PEFT's dataclass gives another default than MedPeft's method defaults (an adapter file without
    /// them means PEFT's value, e.g. LoRA's lora_alpha 8).</summary>
    [JsonIgnore] protected internal virtual IEnumerable<(string Field, JsonNode? Value)> PeftDefaults => [];

    /// <summary>Rejects what was read from a file that MedPeft cannot honour (one line naming the field).</summary>
    protected internal virtual void ValidateFile(string source) { }
}

/// <summary>PEFT's PromptLearningConfig: the fields every prompt-learning adapter carries. token_dim, num_layers and
/// num_attention_heads describe the model and are filled in when saving; <see cref="MedpeftTowers"/> is MedPeft's (BLIP
/// prompt learning, which PEFT does not have; absent = the layout's language towers).</summary>
public abstract record PromptLearningConfig : PeftConfig
{
    [JsonRequired] public int NumVirtualTokens { get; init; }
    public int? TokenDim { get; init; }
    public int? NumTransformerSubmodules { get; init; } = 1;
    public int? NumAttentionHeads { get; init; }
    public int? NumLayers { get; init; }
    public IReadOnlyList<string>? MedpeftTowers { get; init; }

    protected internal override void ValidateFile(string source)
    {
        base.ValidateFile(source);
        foreach (var (field, v) in new[] { ("num_virtual_tokens", (int?)NumVirtualTokens), ("token_dim", TokenDim), ("num_layers", NumLayers),
                     ("num_attention_heads", NumAttentionHeads), ("num_transformer_submodules", NumTransformerSubmodules) })
            if (v is <= 0) throw new MedPeftException($"{source}: field \"{field}\" must be a positive integer");
        if (NumTransformerSubmodules is > 1)
            throw PeftConfigJson.Unsupported(source, "num_transformer_submodules", $"{NumTransformerSubmodules} (encoder-decoder prompts)");
    }
}

/// <summary>PEFT's LNTuningConfig: the norm (or other) modules whose parameters the adapter replaces.</summary>
public sealed record LnTuningConfig : PeftConfig
{
    public override string PeftType => "LN_TUNING";
    public IReadOnlyList<string>? ModulesToSave { get; init; }
    [JsonRequired] public IReadOnlyList<string> TargetModules { get; init; } = [];
}

/// <summary>PEFT's target_modules (and IA3's feedforward_modules): a list of name suffixes or one full-match regex.</summary>
public sealed class ListOrRegexConverter : JsonConverter<JsonNode>
{
    public override JsonNode? Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        var node = JsonNode.Parse(ref reader);
        if (node is null || node is JsonValue v && v.GetValueKind() == JsonValueKind.String
            || node is JsonArray a && a.All(e => e is JsonValue x && x.GetValueKind() == JsonValueKind.String)) return node;
        throw new JsonException("must be a string or a list of strings");
    }

    public override void Write(Utf8JsonWriter writer, JsonNode value, JsonSerializerOptions options) => value.WriteTo(writer, options);

    public static JsonNode? ToJson(IReadOnlyList<string>? list, string? regex) =>
        regex is not null ? JsonValue.Create(regex) : list is null ? null : new JsonArray(list.Select(s => (JsonNode)JsonValue.Create(s)!).ToArray());

    public static (IReadOnlyList<string> List, string? Regex) FromJson(JsonNode? node) => node switch
    {
        null => ([], null),
        JsonValue v => ([], v.GetValue<string>()),
        _ => (node.AsArray().Select(e => e!.GetValue<string>()).ToList(), null),
    };
}

/// <summary>A Python float field: written with a decimal point (0.0, 0.1) as Python's json does.</summary>
public sealed class PythonFloatConverter : JsonConverter<double>
{
    public override double Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) => reader.GetDouble();

    public override void Write(Utf8JsonWriter writer, double value, JsonSerializerOptions options) =>
        writer.WriteRawValue(value == Math.Floor(value) && Math.Abs(value) < 1e15
            ? ((long)value).ToString(CultureInfo.InvariantCulture) + ".0" : value.ToString("R", CultureInfo.InvariantCulture));
}

/// <summary>A field PEFT types as int that MedPeft keeps as a number (lora_alpha): an integer when integral.</summary>
public sealed class IntIfIntegralConverter : JsonConverter<double>
{
    public override double Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) => reader.GetDouble();

    public override void Write(Utf8JsonWriter writer, double value, JsonSerializerOptions options) =>
        writer.WriteRawValue(value == Math.Floor(value) && Math.Abs(value) < 1e15
            ? ((long)value).ToString(CultureInfo.InvariantCulture) : value.ToString("R", CultureInfo.InvariantCulture));
}

/// <summary>Writes and reads adapter_config.json for any <see cref="PeftConfig"/> record, as PEFT's save_pretrained writes
/// it (json.dumps(asdict(config), indent=2, sort_keys=True): every field, keys sorted, two-space indent).</summary>
public static class PeftConfigJson
{
    public static readonly JsonSerializerOptions Options = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        WriteIndented = true,
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        TypeInfoResolver = new DefaultJsonTypeInfoResolver { Modifiers = { SortProperties } },
    };

    /// <summary>sort_keys=True; null optional MedPeft fields (medpeft_*) are left out.</summary>
    static void SortProperties(JsonTypeInfo info)
    {
        if (info.Kind != JsonTypeInfoKind.Object) return;
        var names = info.Properties.Select(p => p.Name).Order(StringComparer.Ordinal).ToList();
        foreach (var p in info.Properties)
        {
            p.Order = names.IndexOf(p.Name);
            if (p.Name.StartsWith("medpeft_", StringComparison.Ordinal)) p.ShouldSerialize = (_, v) => v is not null;
        }
    }

    public static readonly JsonElement True = JsonDocument.Parse("true").RootElement;
    public static readonly IReadOnlyDictionary<string, JsonElement> EmptyObject = new Dictionary<string, JsonElement>();

    /// <summary>A value other than null, [] or {}.</summary>
    public static bool NonEmpty(JsonElement? e) => e is { } v && v.ValueKind != JsonValueKind.Null
        && !(v.ValueKind == JsonValueKind.Array && v.GetArrayLength() == 0) && !(v.ValueKind == JsonValueKind.Object && !v.EnumerateObject().Any());

    public static string Write(PeftConfig config) => JsonSerializer.Serialize(config, config.GetType(), Options);

    public static MedPeftException Unsupported(string source, string field, string why) =>
        new($"{source}: field \"{field}\" {why} is not supported by MedPeft");

    /// <summary>Reads a config of <paramref name="type"/> from a parsed adapter_config.json: fields PEFT defaults
    /// differently filled in, required fields checked, type errors and unsupported values named in one line.</summary>
    public static PeftConfig Read(JsonObject json, Type type, string source)
    {
        if (json["modules_to_save"] is JsonArray { Count: > 0 }) throw Unsupported(source, "modules_to_save", "(extra fully trained modules)");
        var empty = (PeftConfig)Activator.CreateInstance(type)!;
        var info = Options.GetTypeInfo(type);
        foreach (var p in info.Properties.Where(p => p.IsRequired))
            if (json[p.Name] is null) throw new MedPeftException($"{source}: field \"{p.Name}\" is missing");
        json = (JsonObject)json.DeepClone();
        foreach (var (field, value) in empty.PeftDefaults)
            if (!json.ContainsKey(field)) json[field] = value?.DeepClone();
        // A null in the file means the field's default (PEFT writes None for unset optional fields).
        foreach (var k in json.Where(kv => kv.Value is null).Select(kv => kv.Key).ToList())
            if (info.Properties.FirstOrDefault(p => p.Name == k) is { } p && p.PropertyType.IsValueType && Nullable.GetUnderlyingType(p.PropertyType) is null)
                json.Remove(k);
        PeftConfig config;
        try { config = (PeftConfig)json.Deserialize(type, Options)!; }
        catch (JsonException e)
        {
            var field = e.Path?.TrimStart('$', '.') is { Length: > 0 } f ? $"field \"{f}\"" : "a field";
            var why = e.InnerException?.Message ?? e.Message;
            throw new MedPeftException($"{source}: {field} has the wrong type ({why.Split('.', 2)[0]})");
        }
        config.ValidateFile(source);
        return config;
    }
}
