using Microsoft.ML.Tokenizers;

namespace MedPeft.Data;

/// <summary>BLIP's text side: a BERT WordPiece tokenizer (vocab.txt, lower-cased) plus BLIP's [DEC] (decoder start,
/// = bos_token_id) and [ENC] (replaces [CLS] at the start of every question) tokens.</summary>
public sealed class BlipTokenizer
{
    readonly BertTokenizer _bert;
    public int PadId { get; }
    public int ClsId { get; }
    public int SepId { get; }
    public int DecId { get; }
    public int EncId { get; }
    public int VocabSize { get; }

    public BlipTokenizer(string vocabPath)
    {
        if (!File.Exists(vocabPath)) throw new MedPeftException($"{vocabPath}: vocab file not found");
        var vocab = File.ReadAllLines(vocabPath);
        int Id(string token) => Array.IndexOf(vocab, token) is var i and >= 0 ? i
            : throw new MedPeftException($"{vocabPath}: token {token} missing from the vocabulary");
        _bert = BertTokenizer.Create(vocabPath, new BertOptions
        {
            LowerCaseBeforeTokenization = true,
            SpecialTokens = new Dictionary<string, int>
            {
                ["[PAD]"] = Id("[PAD]"), ["[UNK]"] = Id("[UNK]"), ["[CLS]"] = Id("[CLS]"), ["[SEP]"] = Id("[SEP]"),
                ["[MASK]"] = Id("[MASK]"), ["[DEC]"] = Id("[DEC]"), ["[ENC]"] = Id("[ENC]"),
            },
        });
        PadId = Id("[PAD]"); ClsId = Id("[CLS]"); SepId = Id("[SEP]"); DecId = Id("[DEC]"); EncId = Id("[ENC]");
        VocabSize = vocab.Length;
    }

    /// <summary>[CLS] text [SEP] truncated to maxLength (the [SEP] kept), as HF's tokenizer(truncation=True).</summary>
    public int[] Encode(string text, int maxLength)
    {
        var ids = _bert.EncodeToIds(text, addSpecialTokens: false, considerPreTokenization: true, considerNormalization: true);
        var body = ids.Take(Math.Max(0, maxLength - 2));
        return [ClsId, .. body, SepId];
    }

    /// <summary>A question for the text encoder: its first token becomes [ENC] (BLIP/MISS).</summary>
    public int[] EncodeQuestion(string question, int maxLength = 35)
    {
        var ids = Encode(question, maxLength);
        ids[0] = EncId;
        return ids;
    }

    /// <summary>An answer / caption / report for the decoder: [DEC] text [SEP].</summary>
    public int[] EncodeTarget(string text, int maxLength)
    {
        var ids = Encode(text, maxLength);
        ids[0] = DecId;
        return ids;
    }

    /// <summary>Text of generated ids, special tokens and padding dropped, WordPiece pieces joined.</summary>
    public string Decode(IEnumerable<long> ids)
    {
        var keep = ids.Select(i => (int)i).TakeWhile(i => i != SepId).Where(i => i != PadId && i != DecId && i != ClsId && i != EncId);
        return _bert.Decode(keep, skipSpecialTokens: true) ?? "";
    }

    /// <summary>Writes a BERT-style vocab.txt for a closed corpus: special tokens first ([PAD]=0), then single
    /// characters and their ## continuations (so any word still tokenizes), then every corpus word.</summary>
    public static void WriteVocabulary(IEnumerable<string> words, string path)
    {
        var tokens = new List<string> { "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", "[ENC]" };
        var chars = "abcdefghijklmnopqrstuvwxyz0123456789".Select(c => c.ToString()).ToList();
        tokens.AddRange(".,?!;:'\"()-/%".Select(c => c.ToString()));
        tokens.AddRange(chars);
        tokens.AddRange(chars.Select(c => "##" + c));
        var seen = new HashSet<string>(tokens);
        foreach (var w in words.Select(w => w.Trim().ToLowerInvariant()).Where(w => w.Length > 0).Distinct().OrderBy(w => w, StringComparer.Ordinal))
            if (w.All(char.IsLetterOrDigit) && seen.Add(w)) tokens.Add(w);
        AtomicFile.WriteAllText(path, string.Join("\n", tokens) + "\n");
    }
}
