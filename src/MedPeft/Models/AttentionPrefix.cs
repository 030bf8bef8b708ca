using TorchSharp;
using static TorchSharp.torch;

namespace MedPeft.Models;

/// <summary>Extra key/value tokens a self-attention layer prepends to its own (prefix tuning, P-tuning v2), as HF
/// attention does with <c>past_key_values</c>: the prefix is attended by every query (its mask columns are 0) and is
/// not part of any KV cache. Set by Tuning.PrefixTuning on the attention modules it adapts; null = no prefix.</summary>
public interface IAttentionPrefix
{
    /// <summary>Number of virtual tokens.</summary>
    long Length { get; }

    /// <summary>Keys and values [batch, kv_heads, Length, head_dim] for this layer, in <paramref name="dtype"/>.</summary>
    (Tensor Key, Tensor Value) KeyValues(long batch, ScalarType dtype);
}

/// <summary>Soft prompt embeddings prepended to a tower's input embeddings (prompt tuning); null = none.</summary>
public interface IInputPrompt
{
    long Length { get; }

    /// <summary>[batch, Length, hidden] in <paramref name="dtype"/>.</summary>
    Tensor Embeddings(long batch, ScalarType dtype);
}

public static class AttentionPrefixOps
{
    /// <summary>Prepends the prefix keys/values ([B, H, L, D] layout) and widens an additive mask [B|1, 1, Lq|1, K]
    /// with zero (attended) columns for them.</summary>
    public static (Tensor K, Tensor V, Tensor? Mask) Prepend(IAttentionPrefix prefix, Tensor k, Tensor v, Tensor? additiveMask)
    {
        var (pk, pv) = prefix.KeyValues(k.shape[0], k.dtype);
        k = torch.cat([pk, k], 2);
        v = torch.cat([pv, v], 2);
        if (additiveMask is not null)
        {
            var zeros = torch.zeros(additiveMask.shape[0], additiveMask.shape[1], additiveMask.shape[2], prefix.Length,
                dtype: additiveMask.dtype, device: additiveMask.device);
            additiveMask = torch.cat([zeros, additiveMask], 3);
        }
        return (k, v, additiveMask);
    }
}
