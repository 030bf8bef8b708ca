using System.Text.Json;
using MedPeft.Models;
using MedPeft.Models.Llama;
using MedPeft.Models.Llava;
using TorchSharp;
using static TorchSharp.torch;

namespace MedPeft.Tests.Models;

/// <summary>Mistral: MistralConfig defaults and the sliding-window causal mask of HF 4.37 (AttentionMaskConverter).</summary>
public class MistralTests
{
    static LlamaConfig Tiny(int? window, string type = "mistral") => new()
    {
        ModelType = type, VocabSize = 50, HiddenSize = 16, IntermediateSize = 24, NumHiddenLayers = 1, NumAttentionHeads = 4,
        NumKeyValueHeads = 2, RopeTheta = 500, RmsNormEps = 1e-5, SlidingWindow = window,
    };

    [Fact]
    public void Absent_fields_take_MistralConfig_defaults_and_explicit_null_disables_the_window()
    {
        var m = JsonSerializer.Deserialize<LlamaConfig>("""{"model_type": "mistral", "hidden_size": 64, "num_attention_heads": 4}""")!;
        Assert.Equal(14336, m.IntermediateSize);
        Assert.Equal(8, m.NumKeyValueHeads);
        Assert.Equal(4096 * 32, m.MaxPositionEmbeddings);
        Assert.Equal(4096, m.SlidingWindow);
        Assert.Equal(4096, m.EffectiveSlidingWindow);
        Assert.Equal(10000.0, m.RopeTheta);
        Assert.Equal(1e-6, m.RmsNormEps);
        Assert.Equal(64, m.HiddenSize);

        var none = JsonSerializer.Deserialize<LlamaConfig>("""{"model_type": "mistral", "sliding_window": null}""")!;
        Assert.Null(none.SlidingWindow);
        // A round trip (LlavaConfig.Clone) keeps the explicit null instead of falling back to 4096.
        var llava = new LlavaConfig { TextConfig = none };
        Assert.Null(llava.Clone().TextConfig.SlidingWindow);
        Assert.True(llava.Clone().TextConfig.IsMistral);

        var llama = JsonSerializer.Deserialize<LlamaConfig>("""{"sliding_window": 3, "attention_bias": true}""")!;
        Assert.Equal(11008, llama.IntermediateSize);
        Assert.Null(llama.NumKeyValueHeads);
        Assert.Null(llama.EffectiveSlidingWindow);   // LlamaConfig ignores the field
        Assert.True(llama.UsesAttentionBias);
        var mistralBias = JsonSerializer.Deserialize<LlamaConfig>("""{"model_type": "mistral", "attention_bias": true}""")!;
        Assert.False(mistralBias.UsesAttentionBias);   // MistralAttention has no biases

        var bad = new LlavaConfig { TextConfig = new LlamaConfig { ModelType = "gemma" } };
        Assert.Contains("text_config.model_type", Assert.Throws<MedPeftException>(() => bad.Validate("x.json")).Message);
    }

    [Fact]
    public void Window_mask_keeps_the_query_and_the_window_minus_one_keys_before_it()
    {
        // past 2, 3 queries (absolute slots 2, 3, 4), window 2 ⇒ slot q sees q−1 and q.
        var mask = LlamaModel.BuildAdditiveMask(null, 1, 3, 2, ScalarType.Float32, CPU, slidingWindow: 2);
        var allowed = mask[0, 0].eq(0).to(ScalarType.Int64).data<long>().ToArray();
        Assert.Equal(new long[] { 0, 1, 1, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 1, 1 }, allowed);
        // Padding combines with the window (slot 3 padded).
        var pad = torch.tensor(new long[] { 1, 1, 1, 0, 1 }).unsqueeze(0);
        var padded = LlamaModel.BuildAdditiveMask(pad, 1, 3, 2, ScalarType.Float32, CPU, slidingWindow: 2)[0, 0].eq(0).to(ScalarType.Int64).data<long>().ToArray();
        Assert.Equal(new long[] { 0, 1, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1 }, padded);
        Assert.Equal(float.MinValue, mask[0, 0, 0, 0].item<float>());
    }

    /// <summary>The one-layer model recomputed with plain tensors, attention taken per query over exactly the keys it may
    /// see (j ≤ i, j &gt; i − W, not padded).</summary>
    static Tensor Reference(LlamaModel m, Tensor ids, long[,] mask, Tensor positions, int window)
    {
        using var _ = torch.no_grad();
        var c = m.Config;
        long b = ids.shape[0], l = ids.shape[1];
        int heads = c.NumAttentionHeads, kv = c.KeyValueHeads, d = c.HeadDim;
        var layer = m.layers[0];
        var x = m.embed_tokens.weight.index_select(0, ids.reshape(-1)).view(b, l, -1);
        var h = layer.input_layernorm.forward(x);
        var a = layer.self_attn;
        var q = h.matmul(((TorchSharp.Modules.Linear)a.q_proj).weight.t()).view(b, l, heads, d).transpose(1, 2);
        var k = h.matmul(((TorchSharp.Modules.Linear)a.k_proj).weight.t()).view(b, l, kv, d).transpose(1, 2);
        var v = h.matmul(((TorchSharp.Modules.Linear)a.v_proj).weight.t()).view(b, l, kv, d).transpose(1, 2);
        var (cos, sin) = LlamaRotary.CosSin(positions, d, c.RopeTheta, ScalarType.Float32);
        q = LlamaRotary.Apply(q, cos, sin);
        k = LlamaRotary.Apply(k, cos, sin);
        var o = torch.zeros(b, heads, l, d);
        for (int r = 0; r < b; r++)
            for (int hd = 0; hd < heads; hd++)
                for (int i = 0; i < l; i++)
                {
                    var keys = Enumerable.Range(0, (int)l).Where(j => j <= i && j > i - window && mask[r, j] == 1).Select(j => (long)j).ToArray();
                    if (keys.Length == 0) continue;   // a pad query; not compared
                    var sel = torch.tensor(keys);
                    var kk = k[r, hd / (heads / kv)].index_select(0, sel);
                    var vv = v[r, hd / (heads / kv)].index_select(0, sel);
                    var p = (kk.matmul(q[r, hd, i]) / Math.Sqrt(d)).softmax(0);
                    o[r, hd, i] = p.matmul(vv);
                }
        var attn = o.transpose(1, 2).reshape(b, l, heads * d).matmul(((TorchSharp.Modules.Linear)a.o_proj).weight.t());
        x = x + attn;
        x = x + layer.mlp.forward(layer.post_attention_layernorm.forward(x));
        return m.norm.forward(x);
    }

    static (Tensor Ids, long[,] Mask, Tensor MaskT, Tensor Positions) Batch()
    {
        var ids = torch.tensor(new long[,] { { 3, 9, 4, 17, 22, 8, 41, 5 }, { 0, 0, 12, 7, 30, 2, 19, 11 } });
        var mask = new long[,] { { 1, 1, 1, 1, 1, 1, 1, 1 }, { 0, 0, 1, 1, 1, 1, 1, 1 } };
        var maskT = torch.tensor(mask);
        var pos = (maskT.cumsum(-1) - 1).masked_fill(maskT.eq(0), 1);   // LLaVA's position ids for left padding
        return (ids, mask, maskT, pos);
    }

    static void AssertCloseAtMask(Tensor expected, Tensor actual, Tensor mask, double tol = 1e-5)
    {
        var keep = mask.reshape(-1).nonzero().squeeze(1);
        var e = expected.reshape(-1, expected.shape[^1]).index_select(0, keep);
        var a = actual.reshape(-1, actual.shape[^1]).index_select(0, keep);
        var diff = (e - a).abs().max().item<float>();
        Assert.True(diff < tol, $"max |diff| {diff}");
    }

    [Fact]
    public void Window_shorter_than_the_sequence_matches_per_query_attention_over_allowed_keys()
    {
        TorchRuntime.Seed(3);
        using var m = new LlamaModel(Tiny(window: 3));
        m.eval();
        var (ids, mask, maskT, pos) = Batch();
        using var _ = torch.no_grad();
        var actual = m.forward(new LlamaInput(InputIds: ids, AttentionMask: maskT, PositionIds: pos));
        AssertCloseAtMask(Reference(m, ids, mask, pos, 3), actual, maskT);
        // The test can fail: plain causal attention differs from the windowed reference.
        var full = Reference(m, ids, mask, pos, 100);
        Assert.True((full - actual)[0].abs().max().item<float>() > 1e-3);
    }

    [Fact]
    public void Incremental_decoding_with_the_cache_equals_the_full_forward()
    {
        TorchRuntime.Seed(4);
        var c = Tiny(window: 3);
        c.NumHiddenLayers = 2;
        using var m = new LlamaForCausalLM(c);
        m.eval();
        var (ids, _, maskT, pos) = Batch();
        using var _g = torch.no_grad();
        var full = m.forward(new LlamaInput(InputIds: ids, AttentionMask: maskT, PositionIds: pos)).Logits;
        using var cache = new LlamaKVCache(c.NumHiddenLayers);
        var steps = new List<Tensor> { m.forward(new LlamaInput(InputIds: ids[.., ..4], AttentionMask: maskT[.., ..4], PositionIds: pos[.., ..4], Cache: cache)).Logits };
        for (int t = 4; t < 8; t++)
            steps.Add(m.forward(new LlamaInput(InputIds: ids[.., t..(t + 1)], AttentionMask: maskT[.., ..(t + 1)], PositionIds: pos[.., t..(t + 1)], Cache: cache)).Logits);
        Assert.Equal(8, cache.Length);
        AssertCloseAtMask(full, torch.cat(steps, 1), maskT);
    }

    [Fact]
    public void Window_at_least_the_sequence_length_equals_Llama()
    {
        var (ids, _, maskT, pos) = Batch();
        using var _g = torch.no_grad();
        TorchRuntime.Seed(5);
        using var llama = new LlamaModel(Tiny(window: null, type: "llama"));
        var reference = llama.forward(new LlamaInput(InputIds: ids, AttentionMask: maskT, PositionIds: pos));
        Tensor Run(int window)
        {
            using var mistral = new LlamaModel(Tiny(window));
            mistral.load_state_dict(llama.state_dict());
            return mistral.forward(new LlamaInput(InputIds: ids, AttentionMask: maskT, PositionIds: pos));
        }
        Assert.Equal(0f, (Run(8) - reference).abs().max().item<float>());
        Assert.Equal(0f, (Run(50) - reference).abs().max().item<float>());
        Assert.True((Run(7) - reference)[0, 7].abs().max().item<float>() > 1e-4);   // slot 7 loses key 0
    }
}
