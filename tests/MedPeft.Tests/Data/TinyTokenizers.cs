using System.Text;
using System.Text.Json.Nodes;

namespace MedPeft.Tests.Data;

/// <summary>Writes small LLaMA-style tokenizers for tests: the same vocabulary as a HF tokenizer.json (BPE, Prepend/Replace
/// "▁" normalizer, byte fallback, TemplateProcessing with &lt;s&gt;, as LLaMA-2 / Mistral ship it) and as a SentencePiece
/// tokenizer.model (BPE, scores = −merge rank), plus &lt;image&gt; and &lt;pad&gt; added tokens.
/// Ids: &lt;unk&gt; 0, &lt;s&gt; 1, &lt;/s&gt; 2, &lt;0x00&gt;…&lt;0xFF&gt; 3…258, then <see cref="Pieces"/> from 259, then
/// &lt;image&gt; and &lt;pad&gt;.</summary>
public static class TinyTokenizers
{
    public static readonly string[] Pieces = ["▁", "t", "h", "e", "▁t", "he", "▁the", "r", "a", "y", "x", "▁x", "ra", "ray", "?", "w", "i", "s"];
    /// <summary>Merges in priority order (BPE merges list; SentencePiece scores −1, −2, …).</summary>
    public static readonly (string A, string B)[] Merges = [("▁", "t"), ("h", "e"), ("▁t", "he"), ("r", "a"), ("ra", "y"), ("▁", "x")];
    public const int FirstPiece = 259;
    public static int Id(string piece) => FirstPiece + Array.IndexOf(Pieces, piece);
    public static int ImageId => FirstPiece + Pieces.Length;
    public static int PadId => ImageId + 1;
    public static int VocabSize => PadId + 1;

    static JsonObject Added(int id, string content) => new()
    {
        ["id"] = id, ["content"] = content, ["single_word"] = false, ["lstrip"] = false, ["rstrip"] = false, ["normalized"] = false, ["special"] = true,
    };

    public static void WriteTokenizerJson(string dir, bool withImage = true)
    {
        var vocab = new JsonObject { ["<unk>"] = 0, ["<s>"] = 1, ["</s>"] = 2 };
        for (int b = 0; b < 256; b++) vocab[$"<0x{b:X2}>"] = 3 + b;
        foreach (var p in Pieces) vocab[p] = Id(p);
        var added = new JsonArray { Added(0, "<unk>"), Added(1, "<s>"), Added(2, "</s>") };
        if (withImage) { added.Add(Added(ImageId, "<image>")); added.Add(Added(PadId, "<pad>")); }
        JsonObject Special(string id, int typeId) => new() { ["SpecialToken"] = new JsonObject { ["id"] = id, ["type_id"] = typeId } };
        JsonObject Seq(string id, int typeId) => new() { ["Sequence"] = new JsonObject { ["id"] = id, ["type_id"] = typeId } };
        var json = new JsonObject
        {
            ["version"] = "1.0", ["truncation"] = null, ["padding"] = null, ["added_tokens"] = added,
            ["normalizer"] = new JsonObject
            {
                ["type"] = "Sequence",
                ["normalizers"] = new JsonArray
                {
                    new JsonObject { ["type"] = "Prepend", ["prepend"] = "▁" },
                    new JsonObject { ["type"] = "Replace", ["pattern"] = new JsonObject { ["String"] = " " }, ["content"] = "▁" },
                },
            },
            ["pre_tokenizer"] = null,
            ["post_processor"] = new JsonObject
            {
                ["type"] = "TemplateProcessing",
                ["single"] = new JsonArray { Special("<s>", 0), Seq("A", 0) },
                ["pair"] = new JsonArray { Special("<s>", 0), Seq("A", 0), Special("<s>", 1), Seq("B", 1) },
                ["special_tokens"] = new JsonObject { ["<s>"] = new JsonObject { ["id"] = "<s>", ["ids"] = new JsonArray { 1 }, ["tokens"] = new JsonArray { "<s>" } } },
            },
            ["decoder"] = new JsonObject
            {
                ["type"] = "Sequence",
                ["decoders"] = new JsonArray
                {
                    new JsonObject { ["type"] = "Replace", ["pattern"] = new JsonObject { ["String"] = "▁" }, ["content"] = " " },
                    new JsonObject { ["type"] = "ByteFallback" },
                    new JsonObject { ["type"] = "Fuse" },
                    new JsonObject { ["type"] = "Strip", ["content"] = " ", ["start"] = 1, ["stop"] = 0 },
                },
            },
            ["model"] = new JsonObject
            {
                ["type"] = "BPE", ["dropout"] = null, ["unk_token"] = "<unk>", ["continuing_subword_prefix"] = null, ["end_of_word_suffix"] = null,
                ["fuse_unk"] = true, ["byte_fallback"] = true, ["vocab"] = vocab,
                ["merges"] = new JsonArray(Merges.Select(m => (JsonNode)JsonValue.Create($"{m.A} {m.B}")!).ToArray()),
            },
        };
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "tokenizer.json"), json.ToJsonString());
    }

    public static void WriteTokenizerConfig(string dir, string? pad = "<pad>", string paddingSide = "left") =>
        File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), new JsonObject
        {
            ["tokenizer_class"] = "LlamaTokenizer", ["bos_token"] = "<s>",
            ["eos_token"] = new JsonObject { ["content"] = "</s>", ["lstrip"] = false, ["normalized"] = false, ["rstrip"] = false, ["single_word"] = false },
            ["unk_token"] = "<unk>", ["pad_token"] = pad, ["padding_side"] = paddingSide, ["add_bos_token"] = true, ["add_eos_token"] = false,
        }.ToJsonString());

    // ---- SentencePiece ModelProto, serialized by hand (protobuf wire format): pieces = 1, trainer_spec = 2,
    // normalizer_spec = 3; SentencePiece {piece = 1, score = 2, type = 3}; TrainerSpec {model_type = 3 (BPE = 2),
    // byte_fallback = 35, unk_id 40, bos_id 41, eos_id 42}; NormalizerSpec {name = 1, add_dummy_prefix = 3,
    // remove_extra_whitespaces = 4, escape_whitespaces = 5}.

    static void Varint(List<byte> o, ulong v) { while (v >= 0x80) { o.Add((byte)(v | 0x80)); v >>= 7; } o.Add((byte)v); }
    static void Tag(List<byte> o, int field, int wire) => Varint(o, (ulong)(field << 3 | wire));
    static void Int(List<byte> o, int field, long v) { Tag(o, field, 0); Varint(o, (ulong)v); }
    static void Bytes(List<byte> o, int field, byte[] b) { Tag(o, field, 2); Varint(o, (ulong)b.Length); o.AddRange(b); }
    static void Str(List<byte> o, int field, string s) => Bytes(o, field, Encoding.UTF8.GetBytes(s));
    static void Float(List<byte> o, int field, float f) { Tag(o, field, 5); o.AddRange(BitConverter.GetBytes(f)); }

    public static void WriteTokenizerModel(string dir)
    {
        var model = new List<byte>();
        void Piece(string piece, float score, int type)
        {
            var p = new List<byte>();
            Str(p, 1, piece); Float(p, 2, score); Int(p, 3, type);
            Bytes(model, 1, p.ToArray());
        }
        Piece("<unk>", 0, 2); Piece("<s>", 0, 3); Piece("</s>", 0, 3);
        for (int b = 0; b < 256; b++) Piece($"<0x{b:X2}>", 0, 6);
        foreach (var p in Pieces)
        {
            int rank = Array.FindIndex(Merges, m => m.A + m.B == p);
            Piece(p, rank >= 0 ? -(rank + 1) : -1000, 1);
        }
        var trainer = new List<byte>();
        Int(trainer, 3, 2); Int(trainer, 35, 1); Int(trainer, 40, 0); Int(trainer, 41, 1); Int(trainer, 42, 2);
        Bytes(model, 2, trainer.ToArray());
        var normalizer = new List<byte>();
        Str(normalizer, 1, "identity"); Int(normalizer, 3, 1); Int(normalizer, 4, 0); Int(normalizer, 5, 1);
        Bytes(model, 3, normalizer.ToArray());
        Directory.CreateDirectory(dir);
        File.WriteAllBytes(Path.Combine(dir, "tokenizer.model"), model.ToArray());
        File.WriteAllText(Path.Combine(dir, "added_tokens.json"), $$"""{"<image>": {{ImageId}}, "<pad>": {{PadId}}}""");
    }
}
