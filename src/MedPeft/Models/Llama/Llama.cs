using System.Text.Json.Serialization;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MedPeft.Models.Llama;

// LLaMA and Mistral (HF modeling_llama.py / modeling_mistral.py, transformers 4.37; Mistral = Llama's layers without
// attention biases plus a sliding-window causal mask), field for field, so state_dict keys equal the safetensors keys:
// model.embed_tokens, model.layers.N.{self_attn.{q,k,v,o}_proj, mlp.{gate,up,down}_proj, input_layernorm,
// post_attention_layernorm}, model.norm, lm_head. Grouped-query attention (num_key_value_heads < heads), rotary
// position embeddings with the rotate_half convention, an additive float mask (finfo.min, causal + padding) and a
// KV cache for incremental decoding.

/// <summary>HF's LlamaConfig / MistralConfig (4.37) field names. Absent fields take the defaults of the class named by
/// model_type (<see cref="LlamaConfigConverter"/>): Llama's (intermediate 11008, max positions 2048, no window) or
/// Mistral's (intermediate 14336, 8 KV heads, max positions 4096·32, sliding_window 4096, rms eps 1e-6). An explicit
/// <c>"sliding_window": null</c> means no window (Mistral-7B-Instruct-v0.2, LLaVA-Med v1.5). num_key_value_heads
/// absent ⇒ num_attention_heads (Llama).</summary>
[JsonConverter(typeof(LlamaConfigConverter))]
public sealed class LlamaConfig
{
    [JsonPropertyName("model_type")] public string ModelType { get; set; } = "llama";
    [JsonPropertyName("vocab_size")] public int VocabSize { get; set; } = 32000;
    [JsonPropertyName("hidden_size")] public int HiddenSize { get; set; } = 4096;
    [JsonPropertyName("intermediate_size")] public int IntermediateSize { get; set; } = 11008;
    [JsonPropertyName("num_hidden_layers")] public int NumHiddenLayers { get; set; } = 32;
    [JsonPropertyName("num_attention_heads")] public int NumAttentionHeads { get; set; } = 32;
    [JsonPropertyName("num_key_value_heads")] public int? NumKeyValueHeads { get; set; }
    [JsonPropertyName("hidden_act")] public string HiddenAct { get; set; } = "silu";
    [JsonPropertyName("max_position_embeddings")] public int MaxPositionEmbeddings { get; set; } = 2048;
    [JsonPropertyName("initializer_range")] public double InitializerRange { get; set; } = 0.02;
    [JsonPropertyName("rms_norm_eps")] public double RmsNormEps { get; set; } = 1e-6;
    [JsonPropertyName("use_cache")] public bool UseCache { get; set; } = true;
    [JsonPropertyName("pad_token_id")] public long? PadTokenId { get; set; }
    [JsonPropertyName("bos_token_id")] public long? BosTokenId { get; set; } = 1;
    [JsonPropertyName("eos_token_id")] public long? EosTokenId { get; set; } = 2;
    [JsonPropertyName("pretraining_tp")] public int PretrainingTp { get; set; } = 1;
    [JsonPropertyName("tie_word_embeddings")] public bool TieWordEmbeddings { get; set; } = false;
    [JsonPropertyName("rope_theta")] public double RopeTheta { get; set; } = 10000.0;
    /// <summary>HF's rope_scaling (linear / dynamic NTK). Not implemented: a non-null value is rejected (Llama).</summary>
    [JsonPropertyName("rope_scaling")] public System.Text.Json.JsonElement? RopeScaling { get; set; }
    /// <summary>Llama only: MistralConfig has no attention_bias (Mistral's projections never have biases).</summary>
    [JsonPropertyName("attention_bias")] public bool AttentionBias { get; set; } = false;
    [JsonPropertyName("attention_dropout")] public double AttentionDropout { get; set; } = 0.0;
    /// <summary>Mistral only (model_type "mistral"): each query attends to itself and the sliding_window − 1 keys
    /// before it (HF 4.37's AttentionMaskConverter). null ⇒ full causal attention.</summary>
    [JsonPropertyName("sliding_window")] public int? SlidingWindow { get; set; }

    /// <summary>A config with the defaults of HF's class for <paramref name="modelType"/> (LlamaConfig or MistralConfig).</summary>
    public static LlamaConfig Defaults(string modelType) => modelType == "mistral"
        ? new LlamaConfig
        {
            ModelType = "mistral", IntermediateSize = 14336, NumKeyValueHeads = 8, MaxPositionEmbeddings = 4096 * 32,
            SlidingWindow = 4096, RmsNormEps = 1e-6, RopeTheta = 10000.0,
        }
        : new LlamaConfig { ModelType = modelType };

    [JsonIgnore] public bool IsMistral => ModelType == "mistral";
    [JsonIgnore] public int KeyValueHeads => NumKeyValueHeads ?? NumAttentionHeads;
    [JsonIgnore] public int HeadDim => HiddenSize / NumAttentionHeads;
    /// <summary>Whether q/k/v/o have biases: Llama's attention_bias; MistralAttention never has them.</summary>
    [JsonIgnore] public bool UsesAttentionBias => !IsMistral && AttentionBias;
    /// <summary>The window the mask applies: Mistral's sliding_window (Llama ignores the field, as HF does).</summary>
    [JsonIgnore] public int? EffectiveSlidingWindow => IsMistral ? SlidingWindow : null;

    public void Validate(string source, string prefix = "text_config")
    {
        void Check(bool ok, string field, string why) { if (!ok) throw new MedPeftException($"{source}: field \"{prefix}.{field}\" {why}"); }
        Check(ModelType is "llama" or "mistral", "model_type", $"\"{ModelType}\" is not supported (\"llama\" or \"mistral\")");
        Check(HiddenSize > 0 && NumAttentionHeads > 0 && HiddenSize % NumAttentionHeads == 0, "hidden_size", "must be a positive multiple of num_attention_heads");
        Check(KeyValueHeads > 0 && NumAttentionHeads % KeyValueHeads == 0, "num_key_value_heads", "must divide num_attention_heads");
        Check(HeadDim % 2 == 0, "hidden_size", "must give an even head dimension (rotary embeddings)");
        Check(VocabSize > 0, "vocab_size", "must be positive");
        // MistralConfig has no rope_scaling: HF keeps an unknown field as an attribute and never reads it.
        Check(IsMistral || RopeScaling is null || RopeScaling.Value.ValueKind == System.Text.Json.JsonValueKind.Null, "rope_scaling", "is not supported (only plain RoPE)");
        Check(NumHiddenLayers > 0, "num_hidden_layers", "must be positive");
        Check(EffectiveSlidingWindow is null || EffectiveSlidingWindow > 0, "sliding_window", "must be positive or null");
        Activations.Get(HiddenAct);
    }
}

/// <summary>Reads a LlamaConfig as HF's AutoConfig does: the class (hence the defaults for absent fields) is chosen by
/// model_type, then every field present in the JSON overrides its default (explicit nulls included). Writes every
/// field, nulls too, so a round trip keeps "sliding_window": null distinct from an absent window.</summary>
public sealed class LlamaConfigConverter : JsonConverter<LlamaConfig>
{
    static readonly (System.Reflection.PropertyInfo Prop, string Name)[] Fields = typeof(LlamaConfig).GetProperties()
        .Select(p => (p, p.GetCustomAttributes(typeof(JsonPropertyNameAttribute), false).Cast<JsonPropertyNameAttribute>().FirstOrDefault()?.Name))
        .Where(x => x.Item2 is not null).Select(x => (x.p, x.Item2!)).ToArray();

    public override LlamaConfig Read(ref System.Text.Json.Utf8JsonReader reader, Type typeToConvert, System.Text.Json.JsonSerializerOptions options)
    {
        using var doc = System.Text.Json.JsonDocument.ParseValue(ref reader);
        var root = doc.RootElement;
        if (root.ValueKind != System.Text.Json.JsonValueKind.Object) throw new System.Text.Json.JsonException("a Llama/Mistral config must be a JSON object");
        var type = root.TryGetProperty("model_type", out var mt) && mt.ValueKind == System.Text.Json.JsonValueKind.String ? mt.GetString()! : "llama";
        var c = LlamaConfig.Defaults(type);
        foreach (var (prop, name) in Fields)
        {
            if (!root.TryGetProperty(name, out var v)) continue;
            try { prop.SetValue(c, System.Text.Json.JsonSerializer.Deserialize(v, prop.PropertyType, options)); }
            catch (Exception e) when (e is System.Text.Json.JsonException or InvalidOperationException or ArgumentException)
            { throw new System.Text.Json.JsonException($"field \"{name}\": {e.Message.Split('\n')[0]}"); }
        }
        return c;
    }

    public override void Write(System.Text.Json.Utf8JsonWriter writer, LlamaConfig value, System.Text.Json.JsonSerializerOptions options)
    {
        writer.WriteStartObject();
        foreach (var (prop, name) in Fields)
        {
            writer.WritePropertyName(name);
            System.Text.Json.JsonSerializer.Serialize(writer, prop.GetValue(value), prop.PropertyType, options);
        }
        writer.WriteEndObject();
    }
}

/// <summary>HF's LlamaRMSNorm: computed in float32, x·rsqrt(mean(x²)+eps), cast back, then scaled by weight.</summary>
public sealed class LlamaRMSNorm : nn.Module<Tensor, Tensor>
{
    public Parameter weight;
    readonly double _eps;

    public LlamaRMSNorm(long hidden, double eps) : base(nameof(LlamaRMSNorm))
    {
        weight = new Parameter(torch.ones(hidden));
        _eps = eps;
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = torch.NewDisposeScope();
        var inputDtype = x.dtype;
        var h = x.to(ScalarType.Float32);
        var variance = h.pow(2).mean([-1L], keepdim: true);
        h = h * torch.rsqrt(variance + _eps);
        return (weight * h.to(inputDtype)).MoveToOuterDisposeScope();
    }
}

/// <summary>Rotary embedding tables (HF LlamaRotaryEmbedding): inv_freq = 1/theta^(2i/d), angles = position·inv_freq,
/// emb = cat(freqs, freqs). Computed in float32 like HF, indexed by explicit position ids.</summary>
public static class LlamaRotary
{
    public static (Tensor Cos, Tensor Sin) CosSin(Tensor positionIds, int headDim, double theta, ScalarType dtype)
    {
        using var scope = torch.NewDisposeScope();
        var dev = positionIds.device;
        var exponent = torch.arange(0, headDim, 2, dtype: ScalarType.Int64, device: dev).to(ScalarType.Float32) / (float)headDim;
        var invFreq = 1.0f / torch.pow(torch.tensor((float)theta, device: dev), exponent);
        // HF builds t = arange(seq) in float32, freqs = outer(t, inv_freq), then indexes by position id.
        var t = positionIds.to(ScalarType.Float32);
        var freqs = t.unsqueeze(-1) * invFreq;                     // [B, L, d/2]
        var emb = torch.cat([freqs, freqs], -1);                   // [B, L, d]
        var cos = emb.cos().to(dtype).unsqueeze(1);                // [B, 1, L, d]
        var sin = emb.sin().to(dtype).unsqueeze(1);
        return (cos.MoveToOuterDisposeScope(), sin.MoveToOuterDisposeScope());
    }

    public static Tensor RotateHalf(Tensor x)
    {
        long half = x.shape[^1] / 2;
        var x1 = x[.., .., .., ..(int)half];
        var x2 = x[.., .., .., (int)half..];
        return torch.cat([-x2, x1], -1);
    }

    public static Tensor Apply(Tensor x, Tensor cos, Tensor sin) => x * cos + RotateHalf(x) * sin;
}

/// <summary>Per-layer keys and values ([B, kv_heads, S, head_dim], after rotary, before the GQA repeat), as HF's
/// DynamicCache. Owns its tensors (outside any dispose scope); dispose it when decoding ends.</summary>
public sealed class LlamaKVCache : IDisposable
{
    readonly Tensor?[] _keys;
    readonly Tensor?[] _values;

    public LlamaKVCache(int layers) { _keys = new Tensor?[layers]; _values = new Tensor?[layers]; }

    public long Length => _keys[0]?.shape[2] ?? 0;

    public Tensor? Keys(int layer) => _keys[layer];

    /// <summary>Appends this step's keys/values and returns the full ones (owned by the cache).</summary>
    public (Tensor K, Tensor V) Update(int layer, Tensor k, Tensor v)
    {
        var oldK = _keys[layer]; var oldV = _values[layer];
        var nk = (oldK is null ? k.detach().clone() : torch.cat([oldK, k.detach()], 2)).DetachFromDisposeScope();
        var nv = (oldV is null ? v.detach().clone() : torch.cat([oldV, v.detach()], 2)).DetachFromDisposeScope();
        oldK?.Dispose(); oldV?.Dispose();
        _keys[layer] = nk; _values[layer] = nv;
        return (nk, nv);
    }

    /// <summary>Keeps rows <paramref name="rows"/> (beam search's selected beams), in that order: HF's
    /// Cache.reorder_cache.</summary>
    public void Reorder(Tensor rows)
    {
        for (int i = 0; i < _keys.Length; i++)
        {
            if (_keys[i] is null) continue;
            var idx = rows.to(_keys[i]!.device);
            var nk = _keys[i]!.index_select(0, idx).DetachFromDisposeScope();
            var nv = _values[i]!.index_select(0, idx).DetachFromDisposeScope();
            _keys[i]!.Dispose(); _values[i]!.Dispose();
            _keys[i] = nk; _values[i] = nv;
        }
    }

    public void Dispose()
    {
        for (int i = 0; i < _keys.Length; i++) { _keys[i]?.Dispose(); _values[i]?.Dispose(); _keys[i] = _values[i] = null; }
    }
}

/// <summary>What one decoder layer needs besides its hidden states: the additive mask [B, 1, Lq, Lk], the rotary
/// tables for the query positions, and optionally the cache (layer index <c>Layer</c>).</summary>
public sealed record LlamaLayerContext(Tensor? AdditiveMask, Tensor Cos, Tensor Sin, LlamaKVCache? Cache, int Layer);

public sealed class LlamaAttention : nn.Module<Tensor, LlamaLayerContext, Tensor>
{
    public nn.Module<Tensor, Tensor> q_proj;
    public nn.Module<Tensor, Tensor> k_proj;
    public nn.Module<Tensor, Tensor> v_proj;
    public nn.Module<Tensor, Tensor> o_proj;
    readonly int _heads, _kvHeads, _headDim;
    readonly double _dropout;

    /// <summary>Prefix tuning's virtual keys/values, prepended after the cache (never stored in it).</summary>
    public IAttentionPrefix? Prefix { get; set; }

    public LlamaAttention(LlamaConfig c) : base(nameof(LlamaAttention))
    {
        _heads = c.NumAttentionHeads;
        _kvHeads = c.KeyValueHeads;
        _headDim = c.HeadDim;
        _dropout = c.AttentionDropout;
        q_proj = nn.Linear(c.HiddenSize, _heads * _headDim, hasBias: c.UsesAttentionBias);
        k_proj = nn.Linear(c.HiddenSize, _kvHeads * _headDim, hasBias: c.UsesAttentionBias);
        v_proj = nn.Linear(c.HiddenSize, _kvHeads * _headDim, hasBias: c.UsesAttentionBias);
        o_proj = nn.Linear(_heads * _headDim, c.HiddenSize, hasBias: c.UsesAttentionBias);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x, LlamaLayerContext ctx)
    {
        using var scope = torch.NewDisposeScope();
        long b = x.shape[0], l = x.shape[1];
        var q = q_proj.call(x).view(b, l, _heads, _headDim).transpose(1, 2);
        var k = k_proj.call(x).view(b, l, _kvHeads, _headDim).transpose(1, 2);
        var v = v_proj.call(x).view(b, l, _kvHeads, _headDim).transpose(1, 2);
        q = LlamaRotary.Apply(q, ctx.Cos, ctx.Sin);
        k = LlamaRotary.Apply(k, ctx.Cos, ctx.Sin);
        if (ctx.Cache is not null) (k, v) = ctx.Cache.Update(ctx.Layer, k, v);
        var mask = ctx.AdditiveMask?.to(q.dtype);
        if (Prefix is not null) (k, v, mask) = AttentionPrefixOps.Prepend(Prefix, k, v, mask);
        int rep = _heads / _kvHeads;
        if (rep > 1) { k = k.repeat_interleave(rep, 1); v = v.repeat_interleave(rep, 1); }   // HF repeat_kv
        var o = nn.functional.scaled_dot_product_attention(q, k, v, mask, p: training ? _dropout : 0.0);
        o = o.transpose(1, 2).reshape(b, l, _heads * _headDim);
        return o_proj.call(o).MoveToOuterDisposeScope();
    }
}

public sealed class LlamaMLP : nn.Module<Tensor, Tensor>
{
    public nn.Module<Tensor, Tensor> gate_proj;
    public nn.Module<Tensor, Tensor> up_proj;
    public nn.Module<Tensor, Tensor> down_proj;
    readonly Func<Tensor, Tensor> _act;

    public LlamaMLP(LlamaConfig c) : base(nameof(LlamaMLP))
    {
        gate_proj = nn.Linear(c.HiddenSize, c.IntermediateSize, hasBias: false);
        up_proj = nn.Linear(c.HiddenSize, c.IntermediateSize, hasBias: false);
        down_proj = nn.Linear(c.IntermediateSize, c.HiddenSize, hasBias: false);
        _act = Activations.Get(c.HiddenAct);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = torch.NewDisposeScope();
        return down_proj.call(_act(gate_proj.call(x)) * up_proj.call(x)).MoveToOuterDisposeScope();
    }
}

public sealed class LlamaDecoderLayer : nn.Module<Tensor, LlamaLayerContext, Tensor>
{
    public LlamaAttention self_attn;
    public LlamaMLP mlp;
    public LlamaRMSNorm input_layernorm;
    public LlamaRMSNorm post_attention_layernorm;

    public LlamaDecoderLayer(LlamaConfig c) : base(nameof(LlamaDecoderLayer))
    {
        self_attn = new LlamaAttention(c);
        mlp = new LlamaMLP(c);
        input_layernorm = new LlamaRMSNorm(c.HiddenSize, c.RmsNormEps);
        post_attention_layernorm = new LlamaRMSNorm(c.HiddenSize, c.RmsNormEps);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x, LlamaLayerContext ctx)
    {
        using var scope = torch.NewDisposeScope();
        x = x + self_attn.forward(input_layernorm.forward(x), ctx);
        x = x + mlp.forward(post_attention_layernorm.forward(x));
        return x.MoveToOuterDisposeScope();
    }
}

/// <summary>Input of <see cref="LlamaModel"/>: embeddings [B, L, D] (or ids), the 0/1 mask over past + current keys
/// [B, past + L] (null ⇒ all ones), position ids [B, L] (null ⇒ past .. past+L-1) and an optional cache.</summary>
public sealed record LlamaInput(
    Tensor? InputsEmbeds = null,
    Tensor? AttentionMask = null,
    Tensor? PositionIds = null,
    LlamaKVCache? Cache = null,
    Tensor? InputIds = null);

public sealed class LlamaModel : nn.Module<LlamaInput, Tensor>, IGradientCheckpointing
{
    /// <summary>HF's gradient_checkpointing: decoder layers are recomputed in backward while training.</summary>
    public bool GradientCheckpointing { get; set; }

    public TokenEmbedding embed_tokens;
    public ModuleList<LlamaDecoderLayer> layers;
    public LlamaRMSNorm norm;
    readonly LlamaConfig _c;

    public LlamaModel(LlamaConfig c) : base(nameof(LlamaModel))
    {
        _c = c;
        embed_tokens = new TokenEmbedding(c.VocabSize, c.HiddenSize, paddingIdx: c.PadTokenId is long p && p >= 0 && p < c.VocabSize ? p : null);
        layers = new ModuleList<LlamaDecoderLayer>(Enumerable.Range(0, c.NumHiddenLayers).Select(_ => new LlamaDecoderLayer(c)).ToArray());
        norm = new LlamaRMSNorm(c.HiddenSize, c.RmsNormEps);
        RegisterComponents();
    }

    public LlamaConfig Config => _c;

    /// <summary>HF 4.37's _prepare_4d_causal_attention_mask: 0 where a query may attend, finfo(dtype).min where the key
    /// is in the future or padded (masked_fill, so never added twice). [B, 1, L, past + L]. With a
    /// <paramref name="slidingWindow"/> W (Mistral) also where the key slot is W or more slots behind the query:
    /// AttentionMaskConverter._make_causal_mask masks 1 − triu(ones, past − W + 1), i.e. key index j is kept iff
    /// q − W &lt; j ≤ q with q = past + query index. The window counts cache slots, not position ids, so left-padding
    /// slots use up window places; the cache is never truncated, so decoding step by step sees the same keys as the
    /// full forward.</summary>
    public static Tensor BuildAdditiveMask(Tensor? attentionMask, long batch, long queryLen, long pastLen, ScalarType dtype, Device device,
        int? slidingWindow = null)
    {
        using var scope = torch.NewDisposeScope();
        long keyLen = pastLen + queryLen;
        var qpos = torch.arange(queryLen, dtype: ScalarType.Int64, device: device).unsqueeze(1) + pastLen;
        var kpos = torch.arange(keyLen, dtype: ScalarType.Int64, device: device).unsqueeze(0);
        var blocked = kpos.gt(qpos);
        if (slidingWindow is int w) blocked = blocked.logical_or(kpos.le(qpos - w));
        blocked = blocked.unsqueeze(0).unsqueeze(0);                                // [1, 1, L, K]
        if (attentionMask is not null)
        {
            if (attentionMask.shape[1] != keyLen) throw new ArgumentException($"attention mask covers {attentionMask.shape[1]} keys, expected {keyLen}");
            var pad = attentionMask.eq(0).to(device).unsqueeze(1).unsqueeze(1);      // [B, 1, 1, K]
            blocked = blocked.logical_or(pad);
        }
        blocked = blocked.expand(batch, 1, queryLen, keyLen);
        double min = dtype switch
        {
            ScalarType.Float64 => double.MinValue,
            ScalarType.Float16 => -65504.0,
            ScalarType.BFloat16 => -3.3895313892515355e38,
            _ => float.MinValue,
        };
        var mask = torch.zeros(batch, 1, queryLen, keyLen, dtype: dtype, device: device).masked_fill(blocked, min);
        return mask.MoveToOuterDisposeScope();
    }

    public override Tensor forward(LlamaInput input)
    {
        using var scope = torch.NewDisposeScope();
        var x = input.InputsEmbeds ?? embed_tokens.forward(input.InputIds ?? throw new ArgumentException("LlamaModel needs input ids or embeddings"));
        long b = x.shape[0], l = x.shape[1];
        long past = input.Cache?.Length ?? 0;
        var positions = input.PositionIds ?? (torch.arange(l, dtype: ScalarType.Int64, device: x.device) + past).unsqueeze(0).expand(b, l);
        var (cos, sin) = LlamaRotary.CosSin(positions.to(x.device), _c.HeadDim, _c.RopeTheta, x.dtype);
        var mask = BuildAdditiveMask(input.AttentionMask, b, l, past, x.dtype, x.device, _c.EffectiveSlidingWindow);
        bool checkpoint = Checkpointing.Active(this);
        for (int i = 0; i < layers.Count; i++)
        {
            var layer = layers[i];
            if (!checkpoint) { x = layer.forward(x, new LlamaLayerContext(mask, cos, sin, input.Cache, i)); continue; }
            Checkpointing.RefusePrefix(layer.self_attn.Prefix);
            int index = i;
            x = Checkpointing.Run(layer, t => layer.forward(t[0]!, new LlamaLayerContext(t[1], t[2]!, t[3]!, null, index)), x, mask, cos, sin);
        }
        return norm.forward(x).MoveToOuterDisposeScope();
    }
}

/// <summary>Logits and the final hidden states of <see cref="LlamaForCausalLM"/>.</summary>
public sealed record CausalLMOutput(Tensor Logits, Tensor LastHiddenState);

public sealed class LlamaForCausalLM : nn.Module<LlamaInput, CausalLMOutput>
{
    public LlamaModel model;
    public nn.Module<Tensor, Tensor> lm_head;

    public LlamaForCausalLM(LlamaConfig c) : base(nameof(LlamaForCausalLM))
    {
        model = new LlamaModel(c);
        lm_head = c.TieWordEmbeddings ? new SharedLinear(model.embed_tokens.weight, null) : nn.Linear(c.HiddenSize, c.VocabSize, hasBias: false);
        RegisterComponents();
    }

    public override CausalLMOutput forward(LlamaInput input)
    {
        using var scope = torch.NewDisposeScope();
        var h = model.forward(input);
        var logits = lm_head.call(h);
        return new CausalLMOutput(logits.MoveToOuterDisposeScope(), h.MoveToOuterDisposeScope());
    }
}
