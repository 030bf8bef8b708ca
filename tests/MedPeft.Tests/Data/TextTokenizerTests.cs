using MedPeft.Data;
using static MedPeft.Tests.Data.TinyTokenizers;

namespace MedPeft.Tests.Data;

public class TextTokenizerTests : IDisposable
{
    readonly string _dir = Path.Combine(Path.GetTempPath(), $"medpeft-tok-{Guid.NewGuid():N}");

    public void Dispose() { if (Directory.Exists(_dir)) Directory.Delete(_dir, true); }

    // "the xray" → "▁the▁xray"; merges by rank: ▁+t, h+e, ▁t+he, r+a, ra+y, ▁+x ⇒ ▁the ▁x ray.
    static int[] TheXray => [Id("▁the"), Id("▁x"), Id("ray")];

    [Fact]
    public void Tokenizer_json_encodes_with_the_merges_byte_fallback_and_added_tokens()
    {
        WriteTokenizerJson(_dir);
        WriteTokenizerConfig(_dir);
        using var t = TextTokenizers.Load(_dir);
        Assert.IsType<HfJsonTokenizer>(t);
        Assert.Equal([1, .. TheXray], t.Encode("the xray"));
        Assert.Equal(TheXray, t.Encode("the xray", addSpecialTokens: false));
        // é is not in the vocabulary: its UTF-8 bytes C3 A9 ⇒ <0xC3> <0xA9> = 3 + byte.
        Assert.Equal([1, Id("▁"), 3 + 0xC3, 3 + 0xA9], t.Encode("é"));
        // <image> is split out before the model; the text after it gets the "▁" prefix, "\n" falls back to <0x0A>.
        Assert.Equal([1, ImageId, Id("▁"), 3 + 0x0A, Id("t"), Id("he")], t.Encode("<image>\nthe"));
        Assert.Equal(new SpecialTokenIds(1, 2, PadId, 0, ImageId), t.Special);
        Assert.Equal("left", t.PaddingSide);
        Assert.Equal(VocabSize, t.VocabSize);
        Assert.Equal("the xray", t.Decode([PadId, PadId, 1, .. TheXray.Select(i => (long)i), 2, Id("▁the")]));
        Assert.Equal("é", t.Decode([Id("▁"), 3 + 0xC3, 3 + 0xA9]));
    }

    [Fact]
    public void Special_tokens_follow_special_tokens_map_over_tokenizer_config_and_llama_defaults()
    {
        WriteTokenizerJson(_dir, withImage: false);
        using (var bare = TextTokenizers.Load(_dir))
            Assert.Equal(new SpecialTokenIds(1, 2, null, 0, null), bare.Special);   // LlamaTokenizerFast defaults, no pad
        WriteTokenizerConfig(_dir, pad: "<s>", paddingSide: "right");
        File.WriteAllText(Path.Combine(_dir, "special_tokens_map.json"), """{"pad_token": {"content": "<unk>", "lstrip": false}}""");
        using (var t = TextTokenizers.Load(_dir))
        {
            Assert.Equal(0, t.Special.Pad);
            Assert.Equal("right", t.PaddingSide);
        }
        File.WriteAllText(Path.Combine(_dir, "special_tokens_map.json"), """{"pad_token": "<nope>"}""");
        var e = Assert.Throws<MedPeftException>(() => TextTokenizers.Load(_dir));
        Assert.Contains("pad_token \"<nope>\"", e.Message);
    }

    [Fact]
    public void Sentencepiece_model_gives_the_same_ids_as_the_equivalent_tokenizer_json()
    {
        WriteTokenizerModel(_dir);
        using var t = TextTokenizers.Load(_dir);
        Assert.IsType<SentencePieceModelTokenizer>(t);
        Assert.Equal([1, .. TheXray], t.Encode("the xray"));
        Assert.Equal(TheXray, t.Encode("the xray", addSpecialTokens: false));
        Assert.Equal([1, Id("▁"), 3 + 0xC3, 3 + 0xA9], t.Encode("é"));
        Assert.Equal(ImageId, t.Encode("<image> the")[1]);
        Assert.Equal(new SpecialTokenIds(1, 2, null, 0, ImageId), t.Special);
        Assert.Equal("the xray", t.Decode([1, .. TheXray.Select(i => (long)i), 2, 5]));
    }

    [Fact]
    public void Bert_vocab_behind_the_common_interface()
    {
        Directory.CreateDirectory(_dir);
        BlipTokenizer.WriteVocabulary(["lung", "left"], Path.Combine(_dir, "vocab.txt"));
        using var t = TextTokenizers.Load(_dir);
        var blip = new BlipTokenizer(Path.Combine(_dir, "vocab.txt"));
        Assert.Equal(blip.Encode("left lung", 35), t.Encode("left lung"));
        Assert.Equal(blip.Encode("left lung", 35)[1..^1], t.Encode("left lung", addSpecialTokens: false));
        Assert.Equal(new SpecialTokenIds(blip.DecId, blip.SepId, blip.PadId, 1, null), t.Special);
        Assert.Equal("left lung", t.Decode(t.Encode("left lung", addSpecialTokens: false).Select(i => (long)i)));
    }

    [Fact]
    public void A_folder_without_a_tokenizer_is_a_clear_error()
    {
        Directory.CreateDirectory(_dir);
        Assert.Contains("no tokenizer.json", Assert.Throws<MedPeftException>(() => TextTokenizers.Load(_dir)).Message);
        File.WriteAllText(Path.Combine(_dir, "tokenizer.json"), "{\"model\": {\"vocab\": {}}");
        Assert.Contains("tokenizer.json", Assert.Throws<MedPeftException>(() => TextTokenizers.Load(_dir)).Message);
    }
}
