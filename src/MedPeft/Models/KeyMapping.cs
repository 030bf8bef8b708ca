using System.Text.RegularExpressions;

namespace MedPeft.Models;

/// <summary>Which parameter-naming scheme a checkpoint's keys follow.</summary>
public enum CheckpointLayout
{
    Unknown,
    /// <summary>HF BlipForQuestionAnswering: vision_model., text_encoder., text_decoder.</summary>
    HfBlip,
    /// <summary>Salesforce BLIP / MISS code: visual_encoder.blocks.N…, text_encoder…, text_decoder.bert…/cls…</summary>
    OriginalBlip,
    /// <summary>HF LlavaForConditionalGeneration: vision_tower., multi_modal_projector., language_model.</summary>
    HfLlava,
    /// <summary>LLaVA / LLaVA-Med code (LlavaLlamaForCausalLM, LlavaMistralForCausalLM): model.layers…, model.mm_projector…,
    /// model.vision_tower.vision_tower.vision_model…, lm_head.</summary>
    OriginalLlava,
    /// <summary>A stand-alone HF CLIPModel / CLIPVisionModel (vision_model.…, maybe text_model.…): the vision tower of a
    /// LLaVA v1 / LLaVA-Med v1 model, whose own checkpoint leaves the tower out.</summary>
    Clip,
}

/// <summary>How a checkpoint's keys become a model's keys. <see cref="Renames"/>: checkpoint key → model key (identity
/// entries included, so every non-dropped key has exactly one entry). <see cref="Dropped"/>: checkpoint keys that are
/// deliberately not loaded (buffers such as position_ids / inv_freq, pre-training-only heads and momentum copies).
/// <see cref="Extra"/>: checkpoint key → an additional model key that receives the same tensor (LLaVA's lm_head cloned
/// from embed_tokens when a tied checkpoint omits it).</summary>
public sealed record KeyMap(
    CheckpointLayout From,
    IReadOnlyDictionary<string, string> Renames,
    IReadOnlyList<string> Dropped,
    IReadOnlyDictionary<string, string> Extra)
{
    /// <summary>The model keys a checkpoint key goes to: none if dropped (or unknown to the map), else its rename plus
    /// any extra copy.</summary>
    public IEnumerable<string> TargetsOf(string key)
    {
        if (Renames.TryGetValue(key, out var t)) yield return t;
        if (Extra.TryGetValue(key, out var e)) yield return e;
    }

    public static KeyMap Identity(IEnumerable<string> keys, CheckpointLayout layout = CheckpointLayout.Unknown) =>
        new(layout, keys.Distinct().ToDictionary(k => k, k => k), [], new Dictionary<string, string>());
}

/// <summary>Key renames from the original BLIP/MISS and LLaVA/LLaVA-Med layouts to the HF layouts MedPeft's models use.
/// Written from the renames HF's conversion scripts apply (convert_blip_original_pytorch_to_hf.py,
/// convert_llava_weights_to_hf.py), but anchored on prefixes rather than substring replacement.</summary>
public static partial class KeyMapping
{
    /// <summary>Guesses the layout from the key set. Original layouts win over HF ones when markers of both appear.</summary>
    public static CheckpointLayout Detect(IEnumerable<string> keys)
    {
        bool origBlip = false, hfBlipVision = false, hfBlipText = false, origLlava = false, hfLlava = false, clipVision = false;
        foreach (var k in keys)
        {
            if (k.StartsWith("visual_encoder.", StringComparison.Ordinal)) origBlip = true;
            else if (k.StartsWith("vision_model.", StringComparison.Ordinal)) { hfBlipVision = true; clipVision = true; }
            else if (k.StartsWith("text_encoder.", StringComparison.Ordinal) || k.StartsWith("text_decoder.", StringComparison.Ordinal)) hfBlipText = true;
            else if (k.StartsWith("language_model.", StringComparison.Ordinal) || k.StartsWith("multi_modal_projector.", StringComparison.Ordinal)
                     || k.StartsWith("vision_tower.", StringComparison.Ordinal)) hfLlava = true;
            else if (k.StartsWith("model.", StringComparison.Ordinal) || k.StartsWith("lm_head.", StringComparison.Ordinal)) origLlava = true;
        }
        if (origBlip) return CheckpointLayout.OriginalBlip;
        if (hfBlipVision && hfBlipText) return CheckpointLayout.HfBlip;
        if (hfBlipText) return CheckpointLayout.OriginalBlip;   // text towers only: both layouts name them alike
        if (origLlava) return CheckpointLayout.OriginalLlava;
        if (hfLlava) return CheckpointLayout.HfLlava;
        if (clipVision) return CheckpointLayout.Clip;
        return CheckpointLayout.Unknown;
    }

    /// <summary>The map from whatever layout <paramref name="keys"/> are in to the HF layout of <paramref name="target"/>
    /// (HfBlip or HfLlava). Keys already in the target layout map to themselves. Throws a one-line error when the
    /// layouts cannot be reconciled (e.g. BLIP keys for a LLaVA model).</summary>
    public static KeyMap ToHf(IReadOnlyCollection<string> keys, CheckpointLayout target, string source)
    {
        var from = Detect(keys);
        return (target, from) switch
        {
            (CheckpointLayout.HfBlip, CheckpointLayout.HfBlip) => KeyMap.Identity(keys, from),
            (CheckpointLayout.HfBlip, CheckpointLayout.OriginalBlip) => BlipOriginalToHf(keys),
            (CheckpointLayout.HfLlava, CheckpointLayout.HfLlava) => KeyMap.Identity(keys, from),
            (CheckpointLayout.HfLlava, CheckpointLayout.OriginalLlava or CheckpointLayout.Clip) => LlavaOriginalToHf(keys),
            _ => throw new MedPeftException($"{source}: checkpoint keys are in the {from} layout, which does not map to {target} " +
                                            $"(first keys: {string.Join(", ", keys.Take(3))})"),
        };
    }

    // ---------------------------------------------------------------- BLIP

    [GeneratedRegex(@"^blocks\.(\d+)\.(.+)$")] private static partial Regex VitBlock();

    /// <summary>Prefixes of original BLIP pre-training state that BlipForQuestionAnswering has no place for: momentum
    /// encoders, contrastive projections and queues, the ITM head, the temperature.</summary>
    static readonly string[] BlipPretrainOnly =
    [
        "visual_encoder_m.", "text_encoder_m.", "text_decoder_m.", "vision_proj_m.", "text_proj_m.",
        "vision_proj.", "text_proj.", "itm_head.", "image_queue", "text_queue", "idx_queue", "ptr_queue", "temp",
    ];

    /// <summary>Original BLIP / MISS keys → HF BlipForQuestionAnswering keys. The ViT: cls_token → embeddings.class_embedding,
    /// pos_embed → embeddings.position_embedding, patch_embed.proj → embeddings.patch_embedding, blocks.N → encoder.layers.N
    /// with norm1/norm2 → layer_norm1/layer_norm2, attn.qkv → self_attn.qkv (fused in both layouts), attn.proj →
    /// self_attn.projection, mlp.fc1/fc2 unchanged, final norm → post_layernorm. text_encoder.… and text_decoder.bert.… /
    /// text_decoder.cls.… keep their names. position_ids buffers and pre-training-only state are dropped.</summary>
    public static KeyMap BlipOriginalToHf(IEnumerable<string> keys)
    {
        var renames = new Dictionary<string, string>();
        var dropped = new List<string>();
        foreach (var k in keys.Distinct())
        {
            var t = BlipKey(k);
            if (t is null) dropped.Add(k); else renames[k] = t;
        }
        return new KeyMap(CheckpointLayout.OriginalBlip, renames, dropped, new Dictionary<string, string>());
    }

    /// <summary>One original BLIP key in HF's naming; null when the key is not loaded (see <see cref="BlipOriginalToHf"/>).
    /// Keys outside the known towers come back unchanged, so a strict load reports them as unexpected.</summary>
    public static string? BlipKey(string key)
    {
        if (key.EndsWith("position_ids", StringComparison.Ordinal)) return null;
        if (BlipPretrainOnly.Any(p => key.StartsWith(p, StringComparison.Ordinal))) return null;
        const string ve = "visual_encoder.";
        if (!key.StartsWith(ve, StringComparison.Ordinal)) return key;
        var rest = key[ve.Length..];
        string mapped;
        if (rest == "cls_token") mapped = "embeddings.class_embedding";
        else if (rest == "pos_embed") mapped = "embeddings.position_embedding";
        else if (rest.StartsWith("patch_embed.proj.", StringComparison.Ordinal)) mapped = "embeddings.patch_embedding." + rest["patch_embed.proj.".Length..];
        else if (rest.StartsWith("norm.", StringComparison.Ordinal)) mapped = "post_layernorm." + rest["norm.".Length..];
        else if (VitBlock().Match(rest) is { Success: true } m)
        {
            var inner = m.Groups[2].Value;
            inner = inner.StartsWith("norm1.", StringComparison.Ordinal) ? "layer_norm1." + inner[6..]
                  : inner.StartsWith("norm2.", StringComparison.Ordinal) ? "layer_norm2." + inner[6..]
                  : inner.StartsWith("attn.proj.", StringComparison.Ordinal) ? "self_attn.projection." + inner["attn.proj.".Length..]
                  : inner.StartsWith("attn.", StringComparison.Ordinal) ? "self_attn." + inner["attn.".Length..]
                  : inner;
            mapped = $"encoder.layers.{m.Groups[1].Value}.{inner}";
        }
        else mapped = rest;
        return "vision_model." + mapped;
    }

    // ---------------------------------------------------------------- LLaVA

    static readonly string[] LlavaVisionTowerPrefixes =
    [
        "model.vision_tower.vision_tower.vision_model.",   // LLaVA 1.5 / LLaVA-Med 1.5 (CLIPVisionTower wrapping CLIPVisionModel)
        "model.vision_tower.0.vision_model.",              // towers kept in a list/ModuleList
        "model.vision_tower.vision_model.",                // a bare CLIPVisionModel attribute
        "vision_model.",                                   // a stand-alone CLIP checkpoint (LLaVA-Med v1 keeps the tower out)
    ];

    /// <summary>LlavaLlamaForCausalLM / LlavaMistralForCausalLM keys (optionally together with a stand-alone CLIP
    /// checkpoint's keys) → HF LlavaForConditionalGeneration keys: model.embed_tokens / model.layers / model.norm →
    /// language_model.model.…, lm_head → language_model.lm_head, model.mm_projector.0/.2 → multi_modal_projector.linear_1/2,
    /// a single linear model.mm_projector → multi_modal_projector.linear_1 (projector_type "linear"),
    /// model.vision_tower.vision_tower.vision_model.… → vision_tower.vision_model.…. Dropped: rotary inv_freq buffers,
    /// position_ids, model.image_newline, a CLIP checkpoint's text tower and projections. When the checkpoint has
    /// embed_tokens but no lm_head (tied), lm_head also receives embed_tokens (as HF's converter clones it).</summary>
    public static KeyMap LlavaOriginalToHf(IEnumerable<string> keys)
    {
        var list = keys.Distinct().ToList();
        var renames = new Dictionary<string, string>();
        var dropped = new List<string>();
        foreach (var k in list)
        {
            var t = LlavaKey(k);
            if (t is null) dropped.Add(k); else renames[k] = t;
        }
        var extra = new Dictionary<string, string>();
        if (list.Contains("model.embed_tokens.weight") && !list.Contains("lm_head.weight"))
            extra["model.embed_tokens.weight"] = "language_model.lm_head.weight";
        return new KeyMap(CheckpointLayout.OriginalLlava, renames, dropped, extra);
    }

    [GeneratedRegex(@"^model\.mm_projector\.(\d+)\.(.+)$")] private static partial Regex MlpProjector();

    /// <summary>One original LLaVA key in HF's naming; null when the key is not loaded. Keys outside the known parts come
    /// back unchanged, so a strict load reports them as unexpected.</summary>
    public static string? LlavaKey(string key)
    {
        if (key.EndsWith(".inv_freq", StringComparison.Ordinal) || key.EndsWith("position_ids", StringComparison.Ordinal)) return null;
        if (key == "model.image_newline") return null;
        if (key.StartsWith("text_model.", StringComparison.Ordinal) || key is "logit_scale"
            || key.StartsWith("text_projection.", StringComparison.Ordinal) || key.StartsWith("visual_projection.", StringComparison.Ordinal)) return null;
        foreach (var p in LlavaVisionTowerPrefixes)
            if (key.StartsWith(p, StringComparison.Ordinal)) return "vision_tower.vision_model." + key[p.Length..];
        if (MlpProjector().Match(key) is { Success: true } m)
        {
            var idx = m.Groups[1].Value;
            var layer = idx switch { "0" => "linear_1", "2" => "linear_2", _ => null };
            return layer is null ? key : $"multi_modal_projector.{layer}.{m.Groups[2].Value}";
        }
        if (key is "model.mm_projector.weight" or "model.mm_projector.bias") return "multi_modal_projector.linear_1." + key["model.mm_projector.".Length..];
        if (key.StartsWith("lm_head.", StringComparison.Ordinal)) return "language_model." + key;
        if (key.StartsWith("model.embed_tokens.", StringComparison.Ordinal) || key.StartsWith("model.layers.", StringComparison.Ordinal)
            || key.StartsWith("model.norm.", StringComparison.Ordinal)) return "language_model." + key;
        return key;
    }
}
