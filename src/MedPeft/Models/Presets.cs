using System.Text.Json;
using System.Text.Json.Nodes;
using MedPeft.Models.Blip;
using MedPeft.Models.Clip;
using MedPeft.Models.Llama;
using MedPeft.Models.Llava;
using MedPeft.Tuning;
using TorchSharp;
using static TorchSharp.torch;

namespace MedPeft.Models;

public enum ModelFamily { Blip, Llava }

/// <summary>An architecture MedPeft can build: its config, tower layout, the HF key layout its checkpoints load into,
/// and a constructor. <see cref="Notes"/> says where the build departs from the named model (e.g. an original-layout
/// config translated to HF's).</summary>
public sealed record ModelSpec(
    string Name,
    ModelFamily Family,
    object Config,
    TowerLayout Layout,
    Func<nn.Module> Create,
    IReadOnlyList<string> Notes)
{
    /// <summary>True for an original LLaVA / LLaVA-Med folder (LlavaLlamaForCausalLM, LlavaMistralForCausalLM) whose
    /// config was translated.</summary>
    public bool OriginalLayout { get; init; }

    /// <summary>The key layout a checkpoint is renamed into when loading (HfBlip or HfLlava).</summary>
    public CheckpointLayout KeyLayout => Family == ModelFamily.Blip ? CheckpointLayout.HfBlip : CheckpointLayout.HfLlava;

    /// <summary>Builds the model with every tensor on the meta device (names and shapes, no memory).</summary>
    public nn.Module BuildOnMeta() => ModelUtils.OnMeta(Create);

    public nn.Module Build(Device device, ScalarType? dtype = null) => ModelUtils.On(device, dtype, Create);
}

/// <summary>One registry of named architectures (for <c>medpeft inspect --arch</c> and the approval tests), plus
/// <see cref="FromFolder"/> for a checkpoint folder's config.json (HF BLIP, HF LLaVA, or the original LLaVA /
/// LLaVA-Med layout).</summary>
public static class Presets
{
    // ---------------------------------------------------------------- LLaVA-Med configs

    /// <summary>CLIP ViT-L/14 (openai/clip-vit-large-patch14 at 224, or -336): 24 layers, width 1024, 16 heads, MLP 4096,
    /// quick_gelu.</summary>
    public static CLIPVisionConfig ClipVitL14(int imageSize) => new()
    {
        HiddenSize = 1024, IntermediateSize = 4096, NumHiddenLayers = 24, NumAttentionHeads = 16, PatchSize = 14,
        ImageSize = imageSize, ProjectionDim = 768,
    };

    /// <summary>LLaVA-Med v1 (7B): LLaMA-7B (4096 wide, 32 layers, 32 heads, FFN 11008, RMSNorm eps 1e-6) with vocab
    /// 32004, CLIP ViT-L/14 at 224 px, features from the second-to-last CLIP layer with CLS dropped, one linear
    /// projector 1024 → 4096 ⇒ 7,045,826,560 parameters. image_token_index is irrelevant to the counts: v1 marks
    /// images with repeated &lt;im_patch&gt; tokens, which this HF-style merge does not reproduce.</summary>
    public static LlavaConfig LlavaMed7b() => new LlavaConfig
    {
        Architectures = ["LlavaForConditionalGeneration"],
        VisionConfig = ClipVitL14(224),
        TextConfig = new LlamaConfig
        {
            VocabSize = 32004, HiddenSize = 4096, IntermediateSize = 11008, NumHiddenLayers = 32, NumAttentionHeads = 32,
            RmsNormEps = 1e-6, MaxPositionEmbeddings = 2048,
        },
        ProjectorType = "linear",
        VisionFeatureLayer = -2,
        VisionFeatureSelectStrategy = "default",
    }.Validate("llava-med-7b");

    /// <summary>LLaVA-Med v1.5 (microsoft/llava-med-v1.5-mistral-7b): Mistral-7B (4096 wide, 32 layers, 32 heads, 8 KV
    /// heads, FFN 14336, vocab 32000, rope_theta 1e6, RMSNorm eps 1e-5, "sliding_window": null as in its config.json,
    /// from Mistral-7B-Instruct-v0.2) + CLIP ViT-L/14-336 + a 2-layer GELU MLP projector.</summary>
    public static LlavaConfig LlavaMedV15Mistral7b() => new LlavaConfig
    {
        Architectures = ["LlavaForConditionalGeneration"],
        VisionConfig = ClipVitL14(336),
        TextConfig = new LlamaConfig
        {
            ModelType = "mistral", VocabSize = 32000, HiddenSize = 4096, IntermediateSize = 14336, NumHiddenLayers = 32,
            NumAttentionHeads = 32, NumKeyValueHeads = 8, RopeTheta = 1e6, RmsNormEps = 1e-5, MaxPositionEmbeddings = 32768,
            SlidingWindow = null,
        },
        ProjectorType = "mlp2x_gelu",
        VisionFeatureLayer = -2,
        VisionFeatureSelectStrategy = "default",
    }.Validate("llava-med-v1.5-7b");

    // ---------------------------------------------------------------- registry

    public static ModelSpec Blip(string name, BlipConfig c, IReadOnlyList<string>? notes = null)
    {
        bool captioning = c.Architectures?.Contains("BlipForConditionalGeneration") == true;
        Func<nn.Module> create = captioning ? () => new BlipForConditionalGeneration(c) : () => new BlipForQuestionAnswering(c);
        return new ModelSpec(name, ModelFamily.Blip, c, TowerLayout.Blip, create, notes ?? []);
    }

    public static ModelSpec Llava(string name, LlavaConfig c, IReadOnlyList<string>? notes = null) =>
        new(name, ModelFamily.Llava, c, TowerLayout.Llava, () => new LlavaForConditionalGeneration(c), notes ?? []);

    /// <summary>Preset name → spec (a fresh config per call, so callers may modify it).</summary>
    public static readonly IReadOnlyDictionary<string, Func<ModelSpec>> Named = new Dictionary<string, Func<ModelSpec>>
    {
        ["miss-base"] = () => Blip("miss-base", BlipPresets.MissBase()),
        ["blip-vqa-base"] = () => Blip("blip-vqa-base", BlipPresets.BlipVqaBase()),
        ["llava-med-7b"] = () => Llava("llava-med-7b", LlavaMed7b()),
        ["llava-med-v1.5-7b"] = () => Llava("llava-med-v1.5-7b", LlavaMedV15Mistral7b()),
    };

    public static IReadOnlyList<string> Names => Named.Keys.ToList();

    /// <summary>A preset by name, or a checkpoint folder's config.json.</summary>
    public static ModelSpec Get(string nameOrFolder)
    {
        if (Named.TryGetValue(nameOrFolder, out var make)) return make();
        if (Directory.Exists(nameOrFolder)) return FromFolder(nameOrFolder);
        throw new MedPeftException($"--arch {nameOrFolder}: not a preset ({string.Join(", ", Named.Keys)}) nor a folder with config.json");
    }

    /// <summary>The CLI's entry point: builds a preset (or a folder's architecture) on the meta device — no weights —
    /// with its tower layout.</summary>
    public static (nn.Module Model, TowerLayout Layout) Build(string nameOrFolder)
    {
        var spec = Get(nameOrFolder);
        return (spec.BuildOnMeta(), spec.Layout);
    }

    // ---------------------------------------------------------------- folders

    /// <summary>Reads <c>dir/config.json</c> and decides the family from <c>architectures</c> / <c>model_type</c>: HF BLIP
    /// (BlipForQuestionAnswering, BlipForConditionalGeneration, model_type "blip"), HF LLaVA (LlavaForConditionalGeneration,
    /// or model_type "llava" with a text_config), or the original LLaVA / LLaVA-Med layout (LlavaLlamaForCausalLM,
    /// LlavaMistralForCausalLM, model_type llava_llama / llava_mistral, or "llava" with mm_vision_tower and no
    /// text_config), whose flat config is translated into an HF LlavaConfig.</summary>
    public static ModelSpec FromFolder(string dir)
    {
        var path = Path.Combine(dir, "config.json");
        if (!File.Exists(path)) throw new MedPeftException($"{path}: config file not found");
        var text = File.ReadAllText(path);
        JsonObject root;
        try { root = JsonNode.Parse(text) as JsonObject ?? throw new MedPeftException($"{path}: config is not a JSON object"); }
        catch (JsonException e) { throw new MedPeftException($"{path}: invalid JSON ({e.Message.Split('\n')[0]})"); }
        var archs = (root["architectures"] as JsonArray)?.Select(a => a?.GetValue<string>() ?? "").ToList() ?? [];
        var modelType = root["model_type"]?.GetValue<string>() ?? "";
        var name = Path.GetFileName(Path.GetFullPath(dir).TrimEnd('/'));

        bool Has(string a) => archs.Contains(a);
        if (Has("BlipForQuestionAnswering") || Has("BlipForConditionalGeneration") || modelType == "blip")
            return Blip(name, BlipConfig.FromJson(text, path));
        bool original = Has("LlavaLlamaForCausalLM") || Has("LlavaMistralForCausalLM") || modelType is "llava_llama" or "llava_mistral"
                        || (modelType == "llava" && root["text_config"] is null && root["mm_vision_tower"] is not null);
        if (original) return OriginalLlava(name, root, path);
        if (Has("LlavaForConditionalGeneration") || modelType == "llava")
            return Llava(name, LlavaConfig.FromJson(text, path));
        throw new MedPeftException($"{path}: unsupported architecture (architectures [{string.Join(", ", archs)}], model_type \"{modelType}\"); " +
                                   "expected BLIP (BlipForQuestionAnswering) or LLaVA (LlavaForConditionalGeneration, LlavaLlamaForCausalLM, LlavaMistralForCausalLM)");
    }

    /// <summary>Translates an original LLaVA / LLaVA-Med config.json (the language model's fields at top level plus
    /// mm_* fields) into an HF LlavaConfig: mm_vision_tower names the CLIP (openai/clip-vit-large-patch14[-336]),
    /// mm_projector_type the projector (absent ⇒ "linear", the LLaVA v0 / LLaVA-Med v1 single linear layer),
    /// mm_vision_select_layer the feature layer (absent ⇒ −2), mm_vision_select_feature "patch"/"cls_patch" the
    /// strategy "default"/"full".</summary>
    static ModelSpec OriginalLlava(string name, JsonObject root, string path)
    {
        var notes = new List<string> { "original LLaVA layout: config translated to HF LlavaConfig; weights are renamed by KeyMapping.LlavaOriginalToHf" };
        var textJson = (JsonObject)root.DeepClone();
        var textType = textJson["model_type"]?.GetValue<string>() ?? "";
        bool mistral = textType.Contains("mistral") || (textJson["architectures"] as JsonArray)?.Any(a => a?.GetValue<string>() == "LlavaMistralForCausalLM") == true;
        textJson["model_type"] = mistral ? "mistral" : "llama";
        foreach (var k in new[] { "architectures", "torch_dtype" }) textJson.Remove(k);
        LlamaConfig text;
        try { text = JsonSerializer.Deserialize<LlamaConfig>(textJson.ToJsonString()) ?? throw new MedPeftException($"{path}: empty config"); }
        catch (JsonException e) { throw new MedPeftException($"{path}: language-model fields unreadable ({e.Message.Split('\n')[0]})"); }

        var tower = root["mm_vision_tower"]?.GetValue<string>() ?? root["vision_tower"]?.GetValue<string>()
                    ?? throw new MedPeftException($"{path}: original LLaVA config without mm_vision_tower");
        CLIPVisionConfig vision = tower switch
        {
            _ when tower.Contains("clip-vit-large-patch14-336") => ClipVitL14(336),
            _ when tower.Contains("clip-vit-large-patch14") => ClipVitL14(224),
            _ => throw new MedPeftException($"{path}: mm_vision_tower \"{tower}\" is not supported (openai/clip-vit-large-patch14 or -336)"),
        };
        int? mmHidden = root["mm_hidden_size"]?.GetValue<int>();
        if (mmHidden is int h && h != vision.HiddenSize)
            throw new MedPeftException($"{path}: mm_hidden_size {h} does not match {tower}'s width {vision.HiddenSize}");
        var projector = root["mm_projector_type"]?.GetValue<string>() ?? "linear";
        if (projector is not ("linear" or "mlp2x_gelu"))
            throw new MedPeftException($"{path}: mm_projector_type \"{projector}\" is not supported (linear, mlp2x_gelu)");
        var select = root["mm_vision_select_feature"]?.GetValue<string>() ?? "patch";
        var c = new LlavaConfig
        {
            Architectures = ["LlavaForConditionalGeneration"],
            VisionConfig = vision,
            TextConfig = text,
            ProjectorType = projector,
            VisionFeatureLayer = root["mm_vision_select_layer"]?.GetValue<int>() ?? -2,
            VisionFeatureSelectStrategy = select switch
            {
                "patch" => "default",
                "cls_patch" => "full",
                _ => throw new MedPeftException($"{path}: mm_vision_select_feature \"{select}\" is not supported (patch, cls_patch)"),
            },
            PadTokenId = text.PadTokenId,
        };
        var (imageToken, why) = ImageTokenFromTokenizer(Path.GetDirectoryName(Path.GetFullPath(path))!);
        c.ImageTokenIndex = imageToken;
        notes.Add(why);
        return Llava(name, c.Validate(path), notes) with { OriginalLayout = true };
    }

    /// <summary>Original LLaVA configs store no image_token_index (LLaVA splices images at the placeholder id −200, or at
    /// repeated &lt;im_patch&gt; tokens in v0 / LLaVA-Med v1): the tokenizer's &lt;image&gt; added token when it has one,
    /// else HF LlavaConfig's default 32000. The returned sentence says which.</summary>
    public static (long Id, string Why) ImageTokenFromTokenizer(string dir)
    {
        const long hfDefault = 32000;
        bool hasTokenizer = new[] { "tokenizer.json", "tokenizer.model", "vocab.txt" }.Any(f => File.Exists(Path.Combine(dir, f)));
        if (hasTokenizer)
        {
            using var tok = MedPeft.Data.TextTokenizers.Load(dir);
            if (tok.TokenToId(MedPeft.Data.TextTokenizers.ImageToken) is int id)
                return (id, $"image_token_index {id}: the tokenizer's <image> token (original LLaVA configs store none)");
        }
        return (hfDefault, $"image_token_index {hfDefault}: HF LlavaConfig's default, since the {(hasTokenizer ? "tokenizer has no <image> token" : "folder has no tokenizer")} " +
                           "(original LLaVA configs store none)");
    }

    /// <summary>Builds a folder's model on <paramref name="device"/> and loads its weights in whatever layout they are
    /// (HF or original, single/sharded safetensors or pickles), strictly; the model is left in eval mode. With a
    /// <paramref name="dtype"/> the model is built in it and each tensor is converted as it is copied in (no fp32
    /// copy of the model ever exists).</summary>
    public static (nn.Module Model, ModelSpec Spec) LoadFolder(string dir, Device device, ScalarType? dtype = null)
    {
        var spec = FromFolder(dir);
        var model = spec.Build(device, dtype);
        CheckpointFiles.LoadInto(model, dir, spec.KeyLayout);
        model.eval();
        return (model, spec);
    }
}
