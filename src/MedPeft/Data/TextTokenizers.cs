using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.ML.Tokenizers;

namespace MedPeft.Data;

/// <summary>Special token ids as HF's PreTrainedTokenizer exposes them (null when the tokenizer has none), plus the
/// id of LLaVA's &lt;image&gt; placeholder when the vocabulary has it.</summary>
public sealed record SpecialTokenIds(int? Bos, int? Eos, int? Pad, int? Unk, int? Image);

/// <summary>A model folder's tokenizer, whatever its file: HF tokenizer.json, SentencePiece tokenizer.model or BERT
/// vocab.txt. The algorithms are the libraries' (Tokenizers.DotNet = HF's Rust tokenizers; Microsoft.ML.Tokenizers);
/// this only reads the special tokens the way HF does.</summary>
public interface ITextTokenizer : IDisposable
{
    /// <summary>The file the tokenizer was read from.</summary>
    string Source { get; }
    /// <summary>Base vocabulary plus added tokens.</summary>
    int VocabSize { get; }
    SpecialTokenIds Special { get; }
    /// <summary>tokenizer_config.json's padding_side ("right" when absent, HF's default).</summary>
    string PaddingSide { get; }
    /// <summary>HF's tokenizer(text, add_special_tokens=...).input_ids.</summary>
    int[] Encode(string text, bool addSpecialTokens = true);
    /// <summary>Text of ids up to the first EOS, special tokens dropped (skip_special_tokens=True).</summary>
    string Decode(IEnumerable<long> ids);
    /// <summary>The id of a token string (vocabulary or added token), or null.</summary>
    int? TokenToId(string token);
}

/// <summary>Loading a folder's tokenizer and its special tokens (tokenizer_config.json, special_tokens_map.json,
/// added_tokens.json, tokenizer.json's added_tokens), as transformers' from_pretrained resolves them.</summary>
public static class TextTokenizers
{
    public const string ImageToken = "<image>";

    /// <summary>tokenizer.json (preferred, like AutoTokenizer's fast path), else tokenizer.model, else vocab.txt.</summary>
    public static ITextTokenizer Load(string dir)
    {
        if (File.Exists(Path.Combine(dir, "tokenizer.json"))) return new HfJsonTokenizer(dir);
        if (File.Exists(Path.Combine(dir, "tokenizer.model"))) return new SentencePieceModelTokenizer(dir);
        if (File.Exists(Path.Combine(dir, "vocab.txt"))) return new BertVocabTokenizer(dir);
        throw new MedPeftException($"{dir}: no tokenizer.json, tokenizer.model or vocab.txt");
    }

    internal static JsonObject? ReadJson(string path)
    {
        if (!File.Exists(path)) return null;
        try { return JsonNode.Parse(File.ReadAllText(path)) as JsonObject ?? throw new MedPeftException($"{path}: not a JSON object"); }
        catch (JsonException e) { throw new MedPeftException($"{path}: invalid JSON ({e.Message.Split('\n')[0]})"); }
    }

    /// <summary>A special-token entry: a string or an AddedToken object {"content": …}.</summary>
    static string? TokenString(JsonNode? n, string file, string key) => n switch
    {
        null => null,
        JsonValue v when v.TryGetValue<string>(out var s) => s,
        JsonObject o when o["content"] is JsonValue c && c.TryGetValue<string>(out var s) => s,
        _ => throw new MedPeftException($"{file}: field \"{key}\" must be a token string or an object with \"content\""),
    };

    /// <summary>Special token strings: tokenizer_config.json, overridden by special_tokens_map.json (from_pretrained
    /// lets the map replace init kwargs); <paramref name="defaults"/> (the tokenizer class's) for keys neither names.</summary>
    internal static Dictionary<string, string?> SpecialTokenStrings(string dir, IReadOnlyDictionary<string, string?> defaults)
    {
        var result = new Dictionary<string, string?>(defaults);
        foreach (var file in new[] { "tokenizer_config.json", "special_tokens_map.json" })
        {
            var path = Path.Combine(dir, file);
            var json = ReadJson(path);
            if (json is null) continue;
            foreach (var key in new[] { "bos_token", "eos_token", "unk_token", "pad_token" })
                if (json.ContainsKey(key)) result[key] = TokenString(json[key], path, key);
        }
        return result;
    }

    /// <summary>Added tokens beyond the base vocabulary: tokenizer_config.json's added_tokens_decoder and
    /// added_tokens.json (slow tokenizers' files).</summary>
    internal static Dictionary<string, int> AddedTokens(string dir)
    {
        var added = new Dictionary<string, int>();
        var configPath = Path.Combine(dir, "tokenizer_config.json");
        if (ReadJson(configPath)?["added_tokens_decoder"] is JsonObject decoder)
            foreach (var (id, node) in decoder)
            {
                if (!int.TryParse(id, out var i)) throw new MedPeftException($"{configPath}: added_tokens_decoder key \"{id}\" is not an id");
                var content = TokenString(node, configPath, $"added_tokens_decoder.{id}") ?? throw new MedPeftException($"{configPath}: added token {id} has no content");
                added[content] = i;
            }
        var addedPath = Path.Combine(dir, "added_tokens.json");
        if (ReadJson(addedPath) is JsonObject map)
            foreach (var (token, node) in map)
                added[token] = node is JsonValue v && v.TryGetValue<int>(out var i) ? i : throw new MedPeftException($"{addedPath}: \"{token}\" must map to an id");
        return added;
    }

    internal static string PaddingSide(string dir)
    {
        var path = Path.Combine(dir, "tokenizer_config.json");
        var side = ReadJson(path)?["padding_side"]?.GetValue<string>() ?? "right";
        return side is "left" or "right" ? side : throw new MedPeftException($"{path}: padding_side \"{side}\" must be \"left\" or \"right\"");
    }

    internal static SpecialTokenIds Resolve(Dictionary<string, string?> strings, Func<string, int?> toId, string source)
    {
        int? Id(string key)
        {
            var s = strings.GetValueOrDefault(key);
            if (s is null) return null;
            return toId(s) ?? throw new MedPeftException($"{source}: {key} \"{s}\" is not in the vocabulary");
        }
        return new SpecialTokenIds(Id("bos_token"), Id("eos_token"), Id("pad_token"), Id("unk_token"), toId(ImageToken));
    }

    /// <summary>LlamaTokenizer(Fast)'s class defaults: bos &lt;s&gt;, eos &lt;/s&gt;, unk &lt;unk&gt;, no pad.</summary>
    internal static readonly IReadOnlyDictionary<string, string?> LlamaDefaults = new Dictionary<string, string?>
    {
        ["bos_token"] = "<s>", ["eos_token"] = "</s>", ["unk_token"] = "<unk>", ["pad_token"] = null,
    };

    internal static string DecodeUpToEos(IEnumerable<long> ids, SpecialTokenIds special, int vocab, Func<int[], string> decode)
    {
        var keep = ids.TakeWhile(i => special.Eos is not int e || i != e)
            .Where(i => i >= 0 && i < vocab && (special.Pad is not int p || i != p)).Select(i => (int)i).ToArray();
        return keep.Length == 0 ? "" : decode(keep);
    }
}

/// <summary>HF tokenizer.json through Tokenizers.DotNet (HF's Rust tokenizers). Its Encode always applies the
/// post-processor (add_special_tokens=True) and its Decode skips special tokens, so encoding without special tokens
/// uses a second instance loaded from a copy of tokenizer.json whose post_processor is null — exactly what
/// add_special_tokens=False skips in HF.</summary>
public sealed class HfJsonTokenizer : ITextTokenizer
{
    readonly Tokenizers.DotNet.Tokenizer _withSpecial;
    readonly Tokenizers.DotNet.Tokenizer _plain;
    readonly Dictionary<string, int> _vocab = new(StringComparer.Ordinal);

    public string Source { get; }
    public int VocabSize { get; }
    public SpecialTokenIds Special { get; }
    public string PaddingSide { get; }

    public HfJsonTokenizer(string dir)
    {
        Source = Path.Combine(dir, "tokenizer.json");
        var json = TextTokenizers.ReadJson(Source)!;
        if (json["model"]?["vocab"] is JsonObject vocab)
            foreach (var (token, id) in vocab) _vocab[token] = id!.GetValue<int>();
        else if (json["model"]?["vocab"] is JsonArray unigram)   // Unigram: [[piece, score], …], id = index
            for (int i = 0; i < unigram.Count; i++) _vocab[unigram[i]![0]!.GetValue<string>()] = i;
        else throw new MedPeftException($"{Source}: field \"model.vocab\" missing");
        if (json["added_tokens"] is JsonArray addedTokens)
            foreach (var t in addedTokens) _vocab[t!["content"]!.GetValue<string>()] = t["id"]!.GetValue<int>();
        foreach (var (token, id) in TextTokenizers.AddedTokens(dir)) _vocab.TryAdd(token, id);
        VocabSize = _vocab.Values.DefaultIfEmpty(-1).Max() + 1;

        _withSpecial = Open(Source);
        var plainJson = (JsonObject)json.DeepClone();
        plainJson["post_processor"] = null;
        var tmp = Path.Combine(Path.GetTempPath(), $"medpeft-tokenizer-{Guid.NewGuid():N}.json");
        try
        {
            File.WriteAllText(tmp, plainJson.ToJsonString());
            _plain = Open(tmp, Source);
        }
        finally { File.Delete(tmp); }

        PaddingSide = TextTokenizers.PaddingSide(dir);
        // Fast tokenizers have no class defaults for LLaMA-style vocabularies unless tokenizer_config names them;
        // LlamaTokenizerFast's defaults apply when the class is Llama's (or unnamed) and the tokens exist.
        var cls = TextTokenizers.ReadJson(Path.Combine(dir, "tokenizer_config.json"))?["tokenizer_class"]?.GetValue<string>();
        var defaults = cls is null || cls.StartsWith("Llama", StringComparison.Ordinal)
            ? TextTokenizers.LlamaDefaults.ToDictionary(kv => kv.Key, kv => kv.Value is string s && _vocab.ContainsKey(s) ? s : null)
            : new Dictionary<string, string?>();
        Special = TextTokenizers.Resolve(TextTokenizers.SpecialTokenStrings(dir, defaults), TokenToId, dir);
    }

    static Tokenizers.DotNet.Tokenizer Open(string path, string? shownAs = null)
    {
        try { return new Tokenizers.DotNet.Tokenizer(vocabPath: path); }
        catch (Exception e) when (e is not OutOfMemoryException)
        { throw new MedPeftException($"{shownAs ?? path}: not a tokenizer.json the tokenizers library accepts ({e.Message.Split('\n')[0]})"); }
    }

    public int[] Encode(string text, bool addSpecialTokens = true) =>
        (addSpecialTokens ? _withSpecial : _plain).Encode(text).Select(i => (int)i).ToArray();

    public string Decode(IEnumerable<long> ids) =>
        TextTokenizers.DecodeUpToEos(ids, Special, VocabSize, keep => _withSpecial.Decode(keep.Select(i => (uint)i).ToArray()));

    public int? TokenToId(string token) => _vocab.TryGetValue(token, out var id) ? id : null;

    public void Dispose() { _withSpecial.Dispose(); _plain.Dispose(); }
}

/// <summary>A SentencePiece tokenizer.model (LLaMA / Mistral slow tokenizer) through Microsoft.ML.Tokenizers'
/// LlamaTokenizer. Added tokens (added_tokens.json / added_tokens_decoder, e.g. &lt;image&gt;) are passed as special
/// tokens so they are split out before SentencePiece, as HF's slow tokenizer does. LlamaTokenizer adds BOS only.</summary>
public sealed class SentencePieceModelTokenizer : ITextTokenizer
{
    readonly SentencePieceTokenizer _sp;
    readonly Dictionary<string, int> _added;

    public string Source { get; }
    public int VocabSize { get; }
    public SpecialTokenIds Special { get; }
    public string PaddingSide { get; }

    public SentencePieceModelTokenizer(string dir)
    {
        Source = Path.Combine(dir, "tokenizer.model");
        _added = TextTokenizers.AddedTokens(dir);
        try
        {
            using var stream = File.OpenRead(Source);
            _sp = LlamaTokenizer.Create(stream, addBeginOfSentence: true, addEndOfSentence: false, specialTokens: _added.Count > 0 ? _added : null);
        }
        catch (Exception e) when (e is not (OutOfMemoryException or MedPeftException))
        { throw new MedPeftException($"{Source}: not a SentencePiece model ({e.Message.Split('\n')[0]})"); }
        VocabSize = Math.Max(_sp.Vocabulary.Count, _added.Values.DefaultIfEmpty(-1).Max() + 1);
        PaddingSide = TextTokenizers.PaddingSide(dir);
        var defaults = new Dictionary<string, string?>
        {
            ["bos_token"] = _sp.BeginningOfSentenceToken, ["eos_token"] = _sp.EndOfSentenceToken, ["unk_token"] = _sp.UnknownToken, ["pad_token"] = null,
        };
        Special = TextTokenizers.Resolve(TextTokenizers.SpecialTokenStrings(dir, defaults), TokenToId, dir);
    }

    public int[] Encode(string text, bool addSpecialTokens = true) =>
        _sp.EncodeToIds(text, addBeginningOfSentence: addSpecialTokens, addEndOfSentence: false, considerPreTokenization: true, considerNormalization: true).ToArray();

    public string Decode(IEnumerable<long> ids) =>
        TextTokenizers.DecodeUpToEos(ids, Special, VocabSize, keep => _sp.Decode(keep, considerSpecialTokens: false) ?? "");

    public int? TokenToId(string token) =>
        _added.TryGetValue(token, out var a) ? a : _sp.Vocabulary.TryGetValue(token, out var id) ? id : null;

    public void Dispose() { }
}

/// <summary>A BERT vocab.txt (BLIP / MISS) behind the common interface: [CLS] text [SEP] with special tokens, BLIP's
/// [DEC] as BOS (decoder start) and [SEP] as EOS.</summary>
public sealed class BertVocabTokenizer : ITextTokenizer
{
    readonly Dictionary<string, int> _vocab;

    public BlipTokenizer Blip { get; }
    public string Source { get; }
    public int VocabSize => Blip.VocabSize;
    public SpecialTokenIds Special { get; }
    public string PaddingSide { get; }

    public BertVocabTokenizer(string dir)
    {
        Source = Path.Combine(dir, "vocab.txt");
        Blip = new BlipTokenizer(Source);
        _vocab = File.ReadAllLines(Source).Select((t, i) => (t, i)).GroupBy(x => x.t).ToDictionary(g => g.Key, g => g.First().i);
        PaddingSide = TextTokenizers.PaddingSide(dir);
        Special = new SpecialTokenIds(Blip.DecId, Blip.SepId, Blip.PadId, TokenToId("[UNK]"), null);
    }

    public int[] Encode(string text, bool addSpecialTokens = true)
    {
        var ids = Blip.Encode(text, int.MaxValue);
        return addSpecialTokens ? ids : ids[1..^1];
    }

    public string Decode(IEnumerable<long> ids) => Blip.Decode(ids);

    public int? TokenToId(string token) => _vocab.TryGetValue(token, out var id) ? id : null;

    public void Dispose() { }
}
