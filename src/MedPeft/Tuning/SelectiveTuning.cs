using System.Text.RegularExpressions;
using TorchSharp;

namespace MedPeft.Tuning;

/// <summary>Intrinsic tuning: train the existing parameters whose names match a set of patterns, within the chosen
/// towers (as PEFT's LNTuningConfig(target_modules=…) selects by name). LN, FFN, Attn, bias and full tuning are all
/// this one method with different patterns. Patterns are searched in HF parameter names and cover the BLIP
/// (ViT + BERT) and LLaVA (CLIP + LLaMA/Mistral) naming.</summary>
public sealed class SelectiveTuning(string name, string description, params string[] patterns) : ITuningMethod
{
    readonly Regex[] _patterns = patterns.Select(p => new Regex(p, RegexOptions.CultureInvariant)).ToArray();

    public string Name { get; } = name;
    public string Description { get; } = description;

    public bool Matches(string parameterName) => _patterns.Any(r => r.IsMatch(parameterName));

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
