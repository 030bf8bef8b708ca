using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;

namespace MedPeft.Models.Blip;

// Configs use Hugging Face's field names so a checkpoint's config.json loads as is. A field absent from the file
// takes the default of transformers 4.37's BlipVisionConfig / BlipTextConfig / BlipConfig (save_pretrained writes
// only the fields that differ from those defaults).

public sealed class BlipVisionConfig
{
    [JsonPropertyName("hidden_size")] public int HiddenSize { get; set; } = 768;
    [JsonPropertyName("intermediate_size")] public int IntermediateSize { get; set; } = 3072;
    [JsonPropertyName("projection_dim")] public int ProjectionDim { get; set; } = 512;
    [JsonPropertyName("num_hidden_layers")] public int NumHiddenLayers { get; set; } = 12;
    [JsonPropertyName("num_attention_heads")] public int NumAttentionHeads { get; set; } = 12;
    [JsonPropertyName("image_size")] public int ImageSize { get; set; } = 384;
    [JsonPropertyName("patch_size")] public int PatchSize { get; set; } = 16;
    [JsonPropertyName("hidden_act")] public string HiddenAct { get; set; } = "gelu";
    [JsonPropertyName("layer_norm_eps")] public double LayerNormEps { get; set; } = 1e-5;
    [JsonPropertyName("attention_dropout")] public double AttentionDropout { get; set; } = 0.0;
    [JsonPropertyName("initializer_range")] public double InitializerRange { get; set; } = 1e-10;

    [JsonIgnore] public int NumPatches => (ImageSize / PatchSize) * (ImageSize / PatchSize);
}

public sealed class BlipTextConfig
{
    [JsonPropertyName("vocab_size")] public int VocabSize { get; set; } = 30524;
    [JsonPropertyName("hidden_size")] public int HiddenSize { get; set; } = 768;
    [JsonPropertyName("encoder_hidden_size")] public int EncoderHiddenSize { get; set; } = 768;
    [JsonPropertyName("intermediate_size")] public int IntermediateSize { get; set; } = 3072;
    [JsonPropertyName("projection_dim")] public int ProjectionDim { get; set; } = 768;
    [JsonPropertyName("num_hidden_layers")] public int NumHiddenLayers { get; set; } = 12;
    [JsonPropertyName("num_attention_heads")] public int NumAttentionHeads { get; set; } = 8;
    [JsonPropertyName("max_position_embeddings")] public int MaxPositionEmbeddings { get; set; } = 512;
    [JsonPropertyName("hidden_act")] public string HiddenAct { get; set; } = "gelu";
    [JsonPropertyName("layer_norm_eps")] public double LayerNormEps { get; set; } = 1e-12;
    [JsonPropertyName("hidden_dropout_prob")] public double HiddenDropoutProb { get; set; } = 0.0;
    [JsonPropertyName("attention_probs_dropout_prob")] public double AttentionProbsDropoutProb { get; set; } = 0.0;
    [JsonPropertyName("initializer_range")] public double InitializerRange { get; set; } = 0.02;
    [JsonPropertyName("bos_token_id")] public int BosTokenId { get; set; } = 30522;
    [JsonPropertyName("eos_token_id")] public int EosTokenId { get; set; } = 2;
    [JsonPropertyName("pad_token_id")] public int PadTokenId { get; set; } = 0;
    [JsonPropertyName("sep_token_id")] public int SepTokenId { get; set; } = 102;

    /// <summary>transformers 4.37 hard-codes label smoothing 0.1 in BlipTextLMHeadModel's loss; later versions read it
    /// from the config. Absent ⇒ 0.1, the behaviour of the checkpoints this project reproduces.</summary>
    [JsonPropertyName("label_smoothing")] public double LabelSmoothing { get; set; } = 0.1;

    /// <summary>Tie the decoder's LM head (cls.predictions.decoder.weight) to its word embeddings. The original
    /// BLIP/MISS code ties them; HF's BlipForQuestionAnswering does not (its text_decoder is a nested model that
    /// PreTrainedModel.tie_weights never reaches), so for BLIP configs only an explicit <c>true</c> ties.</summary>
    [JsonPropertyName("tie_word_embeddings")] public bool TieWordEmbeddings { get; set; } = false;
}

public sealed class BlipConfig
{
    [JsonPropertyName("architectures")] public List<string>? Architectures { get; set; }
    [JsonPropertyName("model_type")] public string ModelType { get; set; } = "blip";
    [JsonPropertyName("text_config")] public BlipTextConfig TextConfig { get; set; } = new();
    [JsonPropertyName("vision_config")] public BlipVisionConfig VisionConfig { get; set; } = new();
    [JsonPropertyName("projection_dim")] public int ProjectionDim { get; set; } = 512;
    [JsonPropertyName("logit_scale_init_value")] public double LogitScaleInitValue { get; set; } = 2.6592;
    [JsonPropertyName("image_text_hidden_size")] public int ImageTextHiddenSize { get; set; } = 256;
    [JsonPropertyName("initializer_factor")] public double InitializerFactor { get; set; } = 1.0;
    [JsonPropertyName("initializer_range")] public double InitializerRange { get; set; } = 0.02;
    [JsonPropertyName("torch_dtype")] public string? TorchDtype { get; set; }

    static readonly JsonSerializerOptions JsonOptions = new() { WriteIndented = true, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull };

    /// <summary>Like HF's BlipConfig.__init__: the text towers cross-attend to vision features of the vision width.</summary>
    public BlipConfig Normalize()
    {
        TextConfig.EncoderHiddenSize = VisionConfig.HiddenSize;
        return this;
    }

    public static BlipConfig FromJson(string json, string source)
    {
        BlipConfig? c;
        try { c = JsonSerializer.Deserialize<BlipConfig>(json); }
        catch (JsonException e) { throw new MedPeftException($"{source}: invalid BLIP config: {e.Message}"); }
        if (c is null) throw new MedPeftException($"{source}: empty BLIP config");
        return c.Normalize().Validate(source);
    }

    public static BlipConfig Load(string path) =>
        File.Exists(path) ? FromJson(File.ReadAllText(path), path) : throw new MedPeftException($"{path}: config file not found");

    public string ToJson() => JsonSerializer.Serialize(this, JsonOptions);

    public BlipConfig Clone() => FromJson(ToJson(), "(clone)");

    BlipConfig Validate(string source)
    {
        void Check(bool ok, string field, string why) { if (!ok) throw new MedPeftException($"{source}: field \"{field}\" {why}"); }
        var v = VisionConfig; var t = TextConfig;
        Check(v.HiddenSize % v.NumAttentionHeads == 0, "vision_config.hidden_size", "must be divisible by num_attention_heads");
        Check(v.ImageSize % v.PatchSize == 0, "vision_config.image_size", "must be divisible by patch_size");
        Check(t.HiddenSize % t.NumAttentionHeads == 0, "text_config.hidden_size", "must be divisible by num_attention_heads");
        Check(t.VocabSize > 0, "text_config.vocab_size", "must be positive");
        return this;
    }
}
