namespace MedPeft.Models.Blip;

/// <summary>Named BLIP-family architectures. One code path for every size: a preset is only a config.</summary>
public static class BlipPresets
{
    /// <summary>MISS (Chen et al.): BLIP ViT-B/16 at 480 px + BERT-base towers, vocab 30524 (bert-base-uncased +
    /// [DEC], [ENC]), LayerNorm eps 1e-6 in the ViT, decoder LM head tied to its word embeddings (original BLIP
    /// code) ⇒ 361,478,972 parameters.</summary>
    public static BlipConfig MissBase() => new BlipConfig
    {
        Architectures = ["BlipForQuestionAnswering"],
        VisionConfig = new BlipVisionConfig { ImageSize = 480, PatchSize = 16, LayerNormEps = 1e-6, InitializerRange = 0.02 },
        TextConfig = new BlipTextConfig { NumAttentionHeads = 12, TieWordEmbeddings = true },
    }.Normalize();

    /// <summary>HF's Salesforce/blip-vqa-base shape (BlipConfig() defaults, 384 px, untied decoder head).</summary>
    public static BlipConfig BlipVqaBase() => new BlipConfig
    {
        Architectures = ["BlipForQuestionAnswering"],
        TextConfig = new BlipTextConfig { NumAttentionHeads = 12 },
    }.Normalize();

    /// <summary>The embedded benchmark's model: the same architecture, small enough to pretrain and fine-tune on two
    /// CPU cores in minutes. Vocabulary and special-token ids come from the benchmark's vocab.txt.</summary>
    public static BlipConfig Tiny(int vocabSize, int bosTokenId, int sepTokenId, int padTokenId, int imageSize = 64) => new BlipConfig
    {
        Architectures = ["BlipForQuestionAnswering"],
        VisionConfig = new BlipVisionConfig
        {
            HiddenSize = 128, IntermediateSize = 384, NumHiddenLayers = 4, NumAttentionHeads = 4,
            ImageSize = imageSize, PatchSize = 16, LayerNormEps = 1e-6, InitializerRange = 0.02,
        },
        TextConfig = new BlipTextConfig
        {
            VocabSize = vocabSize, HiddenSize = 128, IntermediateSize = 384, NumHiddenLayers = 2, NumAttentionHeads = 4,
            MaxPositionEmbeddings = 64, BosTokenId = bosTokenId, SepTokenId = sepTokenId, PadTokenId = padTokenId,
            EosTokenId = sepTokenId, TieWordEmbeddings = true,
        },
    }.Normalize();

    public static readonly IReadOnlyDictionary<string, Func<BlipConfig>> Named = new Dictionary<string, Func<BlipConfig>>
    {
        ["miss-base"] = MissBase,
        ["blip-vqa-base"] = BlipVqaBase,
    };
}
