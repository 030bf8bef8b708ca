using System.Text.Json;
using System.Text.Json.Nodes;

namespace MedPeft.Models;

/// <summary>A folder's generation_config.json (HF GenerationConfig field names). Absent file or fields ⇒ null.</summary>
public sealed record GenerationConfigFile(
    int? MaxNewTokens, int? MaxLength, int? MinNewTokens, int? MinLength, int? NumBeams, double? LengthPenalty,
    long? EosTokenId, long? PadTokenId, long? BosTokenId, long? DecoderStartTokenId)
{
    public const string FileName = "generation_config.json";

    public static GenerationConfigFile Read(string dir)
    {
        var path = Path.Combine(dir, FileName);
        if (!File.Exists(path)) return new(null, null, null, null, null, null, null, null, null, null);
        JsonObject root;
        try { root = JsonNode.Parse(File.ReadAllText(path)) as JsonObject ?? throw new MedPeftException($"{path}: not a JSON object"); }
        catch (JsonException e) { throw new MedPeftException($"{path}: invalid JSON ({e.Message.Split('\n')[0]})"); }
        T? Get<T>(string field) where T : struct
        {
            var n = root[field];
            if (n is null) return null;
            // HF allows a list of EOS ids; MedPeft's decoding stops on one, the first.
            if (n is JsonArray a) n = a.Count > 0 ? a[0] : null;
            if (n is null) return null;
            try { return n.GetValue<T>(); }
            catch (Exception e) when (e is FormatException or InvalidOperationException)
            { throw new MedPeftException($"{path}: field \"{field}\" must be a {typeof(T).Name.ToLowerInvariant()}"); }
        }
        return new(Get<int>("max_new_tokens"), Get<int>("max_length"), Get<int>("min_new_tokens"), Get<int>("min_length"), Get<int>("num_beams"),
            Get<double>("length_penalty"), Get<long>("eos_token_id"), Get<long>("pad_token_id"), Get<long>("bos_token_id"), Get<long>("decoder_start_token_id"));
    }

    /// <summary>Decoding for a BLIP folder: lengths, beams and length penalty from the file (BLIP's prompt is the one
    /// [DEC] token, so max_length/min_length count it); EOS and pad stay <paramref name="fallback"/>'s because HF's
    /// BlipForQuestionAnswering.generate passes sep_token_id / pad_token_id explicitly, overriding the file.</summary>
    public GenerationOptions ForBlip(GenerationOptions fallback) => fallback with
    {
        MaxNewTokens = MaxNewTokens ?? (MaxLength is int l ? l - 1 : fallback.MaxNewTokens),
        MinNewTokens = MinNewTokens ?? (MinLength is int m ? Math.Max(0, m - 1) : fallback.MinNewTokens),
        NumBeams = NumBeams ?? fallback.NumBeams,
        LengthPenalty = LengthPenalty ?? fallback.LengthPenalty,
    };

    /// <summary>Decoding for a decoder-only (LLaVA) folder: max/min_new_tokens, beams, length penalty, EOS and pad from
    /// the file, else <paramref name="fallback"/>. max_length counts the prompt in HF and is not used as a new-token
    /// budget (LLaVA's eval scripts pass max_new_tokens).</summary>
    public GenerationOptions ForDecoderOnly(GenerationOptions fallback) => fallback with
    {
        MaxNewTokens = MaxNewTokens ?? fallback.MaxNewTokens,
        MinNewTokens = MinNewTokens ?? fallback.MinNewTokens,
        NumBeams = NumBeams ?? fallback.NumBeams,
        LengthPenalty = LengthPenalty ?? fallback.LengthPenalty,
        EosTokenId = (int?)EosTokenId ?? fallback.EosTokenId,
        PadTokenId = (int?)PadTokenId ?? fallback.PadTokenId,
    };
}

/// <summary>Command-line decoding options; null = not given (the model folder's generation_config.json decides).</summary>
public sealed record DecodingOverrides(int? NumBeams = null, int? MaxNewTokens = null, int? MinNewTokens = null)
{
    public GenerationOptions ApplyTo(GenerationOptions o) =>
        o with { NumBeams = NumBeams ?? o.NumBeams, MaxNewTokens = MaxNewTokens ?? o.MaxNewTokens, MinNewTokens = MinNewTokens ?? o.MinNewTokens };
}
