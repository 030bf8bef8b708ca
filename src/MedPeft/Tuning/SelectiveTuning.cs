using System.Text.RegularExpressions;
using TorchSharp;
using static TorchSharp.torch;

namespace MedPeft.Tuning;

/// <summary>Intrinsic tuning: train the existing parameters whose names match a set of patterns, within the chosen
/// towers (as PEFT's LNTuningConfig(target_modules=…) selects by name). LN, FFN, Attn, bias and full tuning are all
/// this one method with different patterns. Patterns are searched in HF parameter names and cover the BLIP
/// (ViT + BERT) and LLaVA (CLIP + LLaMA/Mistral) naming.</summary>
public sealed class SelectiveTuning(string name, string description, params string[] patterns) : ITuningMethod
{
    readonly string[] _patternTexts = patterns;
    readonly Regex[] _patterns = patterns.Select(p => new Regex(p, RegexOptions.CultureInvariant)).ToArray();

    public string Name { get; } = name;
    /// <summary>A loaded LN_TUNING adapter's target_modules: saved as they are (else the modules with trained parameters).</summary>
    public IReadOnlyList<string>? AdapterTargets { get; private init; }
    public string Description { get; } = description;

    /// <summary>Matches HF parameter names; a Linear wrapped by LoRA/IA3 is matched under its own name
    /// (<c>q_proj.base_layer.weight</c> as <c>q_proj.weight</c>).</summary>
    public bool Matches(string parameterName) => _patterns.Any(r => r.IsMatch(parameterName.Replace(".base_layer.", ".", StringComparison.Ordinal)));

    /// <summary>Full fine-tuning has no adapter form; the others save the tuned modules as PEFT's LN_TUNING does.</summary>
    public string? PeftType => ReferenceEquals(this, Full) ? null : "LN_TUNING";
    /// <summary>The tuned parameters are the model's own: always "merged".</summary>
    public Type? ConfigType => PeftType is null ? null : typeof(LnTuningConfig);
    public bool CanMerge => true;

    /// <summary>An LN_TUNING-style adapter of every module with a trained parameter of its own (PEFT's
    /// ln_tuning_layers keys).</summary>
    public void SaveAdapter(nn.Module model, TowerLayout layout, IReadOnlyList<string> towers, string dir, string? taskType)
    {
        if (PeftType is null) throw new MedPeftException($"{dir}: {Name} fine-tuning has no adapter form");
        var tuned = AdapterTargets?.ToList() ?? model.named_modules()
            .Where(x => x.name.Length > 0 && x.module.named_parameters(recurse: false).Any(p => p.parameter.requires_grad))
            .Select(x => x.name).ToList();
        PeftAdapters.SaveLnTuning(model, dir, tuned, taskType);
    }

    /// <summary>LN_TUNING: the targeted modules' parameters are replaced by the adapter's.</summary>
    public ITuningMethod Load(nn.Module model, PeftAdapterConfig config, IReadOnlyDictionary<string, Tensor> state, string source, bool trainable)
    {
        var targets = PeftAdapters.LnTuningParameters(model, config.LnTargets!).ToDictionary(kv => kv.Key, kv => (Tensor)kv.Value);
        PeftAdapters.CopyInto(targets, state, source);
        // Norms keep their flag unless asked to train (they are the model's own parameters).
        if (trainable) foreach (var t in targets.Values) t.requires_grad = true;
        return new SelectiveTuning(Name, Description, _patternTexts) { AdapterTargets = config.LnTargets };
    }

    public void Finalize(nn.Module model, FinalizeMode mode) { }

    public void Apply(torch.nn.Module model, TowerLayout layout, IReadOnlyList<string> towers)
    {
        foreach (var (pname, p) in model.named_parameters())
        {
            var tower = layout.TowerOf(pname);
            if (tower is not null && towers.Contains(tower) && Matches(pname)) p.requires_grad = true;
        }
    }

    /// <summary>Every LayerNorm / RMSNorm affine parameter (γ and β).</summary>
    public static readonly SelectiveTuning LayerNorm = new("ln", "LayerNorm/RMSNorm weights and biases",
        @"(^|\.)(LayerNorm|layer_norm\d*|layernorm|post_layernorm|pre_layrnorm|input_layernorm|post_attention_layernorm|norm)\.(weight|bias)$");

    /// <summary>Feed-forward blocks: ViT/CLIP mlp.fc1/fc2, BERT intermediate.dense + layer output.dense (not the
    /// attention output), LLaMA gate/up/down projections; weights and biases.</summary>
    public static readonly SelectiveTuning FeedForward = new("ffn", "feed-forward (MLP) layers",
        @"\.mlp\.(fc1|fc2|gate_proj|up_proj|down_proj)\.(weight|bias)$",
        @"\.intermediate\.dense\.(weight|bias)$",
        @"\.layer\.\d+\.output\.dense\.(weight|bias)$");

    /// <summary>Attention: ViT fused qkv + projection, BERT self- and cross-attention Q/K/V and their output dense,
    /// LLaMA/CLIP q/k/v/o projections.</summary>
    public static readonly SelectiveTuning Attention = new("attn", "self- and cross-attention incl. output projections",
        @"\.self_attn\.(qkv|projection|q_proj|k_proj|v_proj|o_proj|out_proj)\.(weight|bias)$",
        @"\.(attention|crossattention)\.(self\.(query|key|value)|output\.dense)\.(weight|bias)$");

    /// <summary>BitFit: every bias term (LayerNorm β included).</summary>
    public static readonly SelectiveTuning Bias = new("bias", "every bias term (BitFit)", @"(^|\.)bias$");

    public static readonly SelectiveTuning Full = new("full", "every parameter", @".");
}
