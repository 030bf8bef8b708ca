using System.Runtime.CompilerServices;
using System.Text.Json.Nodes;
using MedPeft.Models;
using MedPeft.Models.Blip;
using MedPeft.Models.Llama;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MedPeft.Tuning;

/// <summary>Prefix-tuning settings with PEFT 0.11's PrefixTuningConfig names. <see cref="PrefixProjection"/> true is
/// prefix tuning (Li &amp; Liang 2021: the prefix is reparameterised by an MLP, Linear(token_dim, encoder_hidden_size) →
/// Tanh → Linear(encoder_hidden_size, layers·2·token_dim)); false is P-tuning v2 (Liu et al. 2022: the per-layer
/// prefix is trained directly), which PEFT also runs as PREFIX_TUNING with prefix_projection false.</summary>
public sealed record PrefixTuningConfig : PromptLearningConfig
{
    public override string PeftType => "PREFIX_TUNING";
    /// <summary>10 virtual tokens: MILE's setting on MISS (paper-facts.md).</summary>
    public PrefixTuningConfig() => NumVirtualTokens = 10;
    public bool PrefixProjection { get; init; } = true;
    /// <summary>512: the MLP width of Li &amp; Liang's reference code (mid_dim 512); PEFT has no default.</summary>
    public int EncoderHiddenSize { get; init; } = 512;

    /// <summary>PEFT's default is no projection; a file without encoder_hidden_size never builds the MLP (loaded
    /// prefixes are the MLP's output).</summary>
    protected internal override IEnumerable<(string Field, JsonNode? Value)> PeftDefaults => [("prefix_projection", false), ("encoder_hidden_size", 0)];

    public PrefixTuningConfig Validate(string source)
    {
        if (NumVirtualTokens <= 0) throw new MedPeftException($"{source}: num_virtual_tokens must be positive (got {NumVirtualTokens})");
        if (PrefixProjection && EncoderHiddenSize <= 0) throw new MedPeftException($"{source}: encoder_hidden_size must be positive (got {EncoderHiddenSize})");
        return this;
    }
}

/// <summary>PEFT's PrefixEncoder: <c>embedding</c> [N, layers·2·kv_dim] — or [N, token_dim] followed by the
/// <c>transform</c> MLP with prefix_projection. Registered as <c>prompt_encoder</c> on the tower it adapts.</summary>
public sealed class PrefixEncoder : nn.Module<Tensor, Tensor>
{
    public Embedding embedding;
    public Sequential? transform;

    public PrefixEncoder(long numVirtualTokens, long tokenDim, long outDim, bool projection, long encoderHidden, Device device) : base(nameof(PrefixEncoder))
    {
        if (projection)
        {
            embedding = nn.Embedding(numVirtualTokens, tokenDim, device: device, dtype: ScalarType.Float32);
            transform = nn.Sequential(
                ("0", nn.Linear(tokenDim, encoderHidden, device: device, dtype: ScalarType.Float32)),
                ("1", nn.Tanh()),
                ("2", nn.Linear(encoderHidden, outDim, device: device, dtype: ScalarType.Float32)));
        }
        else embedding = nn.Embedding(numVirtualTokens, outDim, device: device, dtype: ScalarType.Float32);
        RegisterComponents();
    }

    /// <summary>prefix tokens [.., N] → past key values [.., N, layers·2·kv_dim].</summary>
    public override Tensor forward(Tensor tokens)
    {
        using var scope = torch.NewDisposeScope();
        var e = embedding.forward(tokens);
        return (transform is null ? e : transform.forward(e)).MoveToOuterDisposeScope();
    }
}

/// <summary>The prefix of one adapted tower: its encoder, the self-attention layers it feeds (in order) and the per-
/// forward key/value table, computed when layer 0 asks for it (layer 0 runs first in every forward) and reused by the
/// other layers, so the MLP runs once per forward, with gradient.</summary>
public sealed class PrefixTower
{
    public required string Tower { get; init; }
    public required string ModuleName { get; init; }
    public required nn.Module Root { get; init; }
    public required PrefixEncoder Encoder { get; init; }
    public required int NumVirtualTokens { get; init; }
    public required int NumLayers { get; init; }
    public required int KvHeads { get; init; }
    public required int HeadDim { get; init; }
    /// <summary>PEFT's token_dim: kv_heads × head_dim (= the hidden size unless the model uses GQA).</summary>
    public required int TokenDim { get; init; }
    public required int HiddenSize { get; init; }
    public required List<nn.Module> Attentions { get; init; }
    public BlipTextEmbeddings? Embeddings { get; init; }
    /// <summary>LLaMA: RoPE angles for position −N. HF gives real tokens positions N.. after an unrotated prefix; RoPE
    /// being relative, rotating the prefix keys by −N is the same attention with the model's own positions, so the
    /// LLaVA merge, the mask builder and the KV-cache decoding stay as they are (the prefix is never in the cache).</summary>
    public double? RopeTheta { get; internal set; }
    Tensor? _table;

    /// <summary>PEFT's get_prompt_embedding_to_save: the encoder applied to the N prefix tokens, [N, layers·2·kv_dim].</summary>
    public Tensor PromptEmbeddings()
    {
        using var scope = torch.NewDisposeScope();
        var tokens = torch.arange(NumVirtualTokens, dtype: ScalarType.Int64, device: Encoder.embedding.weight!.device);
        return Encoder.forward(tokens).MoveToOuterDisposeScope();
    }

    internal (Tensor K, Tensor V) KeyValues(int layer, long batch, ScalarType dtype)
    {
        if (layer == 0 || _table is null)
        {
            using var scope = torch.NewDisposeScope();
            var t = PromptEmbeddings().view(NumVirtualTokens, NumLayers * 2, KvHeads, HeadDim).permute(1, 2, 0, 3);   // [2L, H, N, D]
            _table?.Dispose();
            _table = t.DetachFromDisposeScope();
        }
        var k = _table[2 * layer];
        var v = _table[2 * layer + 1];
        if (RopeTheta is double theta)
        {
            var pos = torch.full(1, 1, -NumVirtualTokens, dtype: ScalarType.Int64, device: k.device);
            var (cos, sin) = LlamaRotary.CosSin(pos, HeadDim, theta, k.dtype);
            k = LlamaRotary.Apply(k.unsqueeze(0), cos, sin).squeeze(0);
        }
        return (k.unsqueeze(0).expand(batch, -1, -1, -1).to(dtype), v.unsqueeze(0).expand(batch, -1, -1, -1).to(dtype));
    }

    internal void Release() { _table?.Dispose(); _table = null; }
}

sealed class LayerPrefix(PrefixTower tower, int layer) : IAttentionPrefix
{
    public long Length => tower.NumVirtualTokens;
    public (Tensor Key, Tensor Value) KeyValues(long batch, ScalarType dtype) => tower.KeyValues(layer, batch, dtype);
}

/// <summary>Prefix tuning / P-tuning v2 as PEFT 0.11 runs them through <c>past_key_values</c>: N virtual keys and
/// values per layer, prepended in self-attention, attended by every query (mask ones), not rotated (LLaMA), with real
/// tokens' positions after the prefix (BERT/BLIP: absolute position ids offset by N, as HF offsets them by the past
/// length). BLIP: every layer's self-attention of each adapted text tower (encoder and/or decoder; cross-attention is
/// never touched). LLaVA: every decoder layer of the LLM.
/// <para>Grouped-query attention (num_key_value_heads &lt; num_attention_heads, e.g. Mistral): the prefix is
/// kv_heads × head_dim wide per layer and key/value, and so is token_dim (the MLP's input and the config's token_dim;
/// num_attention_heads is written as num_key_value_heads) — what PEFT does since 0.12.0: src/peft/utils/other.py,
/// _prepare_prompt_learning_config, PR #1901 "FIX Prefix tuning Grouped-Query Attention" (commit 6472061a,
/// 2024-07-22), sets token_dim = token_dim // num_attention_heads × num_key_value_heads and num_attention_heads =
/// num_key_value_heads for PREFIX_TUNING whenever the model config has num_key_value_heads. PEFT ≥ 0.12.0 loads
/// such adapters (it applies that rescaling to a config that still says the hidden size, too); PEFT 0.11 cannot:
/// it sizes the prefix by the hidden size (load fails on the prompt_embeddings shape) and cannot prefix-tune a GQA
/// model at all (its past_key_values have num_attention_heads heads). Without GQA nothing differs from 0.11.</para></summary>
public static class PrefixTuning
{
    static readonly ConditionalWeakTable<nn.Module, PrefixTower> Towers = new();

    public static List<PrefixTower> TowersOf(nn.Module model)
    {
        var list = new List<PrefixTower>();
        foreach (var (_, m) in model.named_modules())
            if (Towers.TryGetValue(m, out var t)) list.Add(t);
        return list;
    }

    /// <summary>Towers of a layout prefix tuning applies to, in layout order, from the requested ones.</summary>
    public static List<string> ApplicableTowers(TowerLayout layout, IReadOnlyList<string> towers, string source)
    {
        var ok = layout.Towers.Keys.Where(t => t is "text_encoder" or "text_decoder" or "llm").ToList();
        var bad = towers.Where(t => !ok.Contains(t)).ToList();
        if (bad.Count > 0 && !TowerScope.IsAll(layout, towers))
            throw new MedPeftException($"{source}: prompt-learning methods apply to the language towers ({string.Join(", ", ok)}), not to {string.Join(", ", bad)}");
        return ok.Where(towers.Contains).ToList();
    }

    /// <summary>Adds a prefix (trainable) to each tower; returns the adapted towers.</summary>
    public static List<PrefixTower> Apply(nn.Module model, PrefixTuningConfig config, TowerLayout layout, IReadOnlyList<string> towers, string source = "prefix")
    {
        config.Validate(source);
        var result = new List<PrefixTower>();
        foreach (var tower in ApplicableTowers(layout, towers, source))
        {
            var name = layout.Towers[tower].TrimEnd('.');
            var root = model.named_modules().FirstOrDefault(x => x.name == name).module;
            if (root is null)
            {
                if (TowerScope.IsAll(layout, towers)) continue;   // e.g. no text_encoder in a captioning model
                throw new MedPeftException($"{source}: the model has no module \"{name}\" (tower {tower})");
            }
            if (Towers.TryGetValue(root, out var existing))
            {
                foreach (var (_, p) in existing.Encoder.named_parameters()) p.requires_grad = true;
                result.Add(existing); continue;
            }
            result.Add(Attach(tower, name, root, config.NumVirtualTokens, config.PrefixProjection, config.EncoderHiddenSize, source));
        }
        if (result.Count == 0) throw new MedPeftException($"{source}: no language tower to adapt in [{string.Join(", ", towers)}]");
        return result;
    }

    internal static PrefixTower Attach(string tower, string name, nn.Module root, int n, bool projection, int encoderHidden, string source)
    {
        var device = root.parameters().First().device;
        List<nn.Module> attentions;
        int kvHeads, headDim, tokenDim, hidden;
        double? theta = null;
        BlipTextEmbeddings? embeddings = null;
        if (root is LlamaForCausalLM lm)
        {
            var c = lm.model.Config;
            attentions = lm.model.layers.Select(l => (nn.Module)l.self_attn).ToList();
            // PEFT ≥ 0.12.0's token_dim for GQA (see the class comment): the key/value width, = hidden without GQA.
            kvHeads = c.KeyValueHeads; headDim = c.HeadDim; tokenDim = c.KeyValueHeads * c.HeadDim; theta = c.RopeTheta;
            hidden = c.HiddenSize;
        }
        else
        {
            var bert = root as BlipTextModel ?? (root as BlipTextLMHeadModel)?.bert
                ?? throw new MedPeftException($"{source}: tower {tower} ({root.GetType().Name}) has no self-attention prefix tuning supports");
            attentions = bert.encoder.layer.Select(l => (nn.Module)l.attention.self).ToList();
            tokenDim = bert.encoder.layer[0].attention.self.HiddenSize;
            kvHeads = (int)(bert.encoder.layer[0].attention.self.GetHeads());
            headDim = tokenDim / kvHeads;
            hidden = tokenDim;
            embeddings = bert.embeddings;
        }
        int layers = attentions.Count;
        long outDim = (long)layers * 2 * kvHeads * headDim;
        var encoder = new PrefixEncoder(n, tokenDim, outDim, projection, encoderHidden, device);
        foreach (var (_, p) in encoder.named_parameters()) p.requires_grad = true;
        root.register_module("prompt_encoder", encoder);
        var pt = new PrefixTower
        {
            Tower = tower, ModuleName = name, Root = root, Encoder = encoder, NumVirtualTokens = n, NumLayers = layers,
            KvHeads = kvHeads, HeadDim = headDim, TokenDim = tokenDim, HiddenSize = hidden, Attentions = attentions, Embeddings = embeddings, RopeTheta = theta,
        };
        for (int i = 0; i < layers; i++)
        {
            var prefix = new LayerPrefix(pt, i);
            if (attentions[i] is LlamaAttention la) la.Prefix = prefix;
            else ((BlipTextSelfAttention)attentions[i]).Prefix = prefix;
        }
        if (embeddings is not null) embeddings.PastLength = n;
        Towers.Add(root, pt);
        return pt;
    }

    /// <summary>Removes every prefix (hooks, position offsets, prompt_encoder modules): the plain base model.</summary>
    public static void Unload(nn.Module model)
    {
        foreach (var t in TowersOf(model))
        {
            foreach (var a in t.Attentions)
                if (a is LlamaAttention la) la.Prefix = null; else ((BlipTextSelfAttention)a).Prefix = null;
            if (t.Embeddings is not null) t.Embeddings.PastLength = 0;
            ModuleSurgery.RemoveChild(t.Root, "prompt_encoder");
            Towers.Remove(t.Root);
            t.Release();
            t.Encoder.Dispose();
        }
    }
}

/// <summary>"prefix" (with the reparameterisation MLP) and "ptuning" (P-tuning v2: without it), scoped to the
/// language towers (BLIP text_encoder / text_decoder, LLaVA llm); no towers = every language tower.</summary>
public sealed class PrefixTuningMethod(string name, PrefixTuningConfig config) : ITuningMethod
{
    public PrefixTuningConfig Config { get; } = config;
    public string Name { get; } = name;
    public string Description => Config.PrefixProjection
        ? $"prefix tuning: {Config.NumVirtualTokens} virtual key/value tokens per layer through an MLP ({Config.EncoderHiddenSize})"
        : $"P-tuning v2: {Config.NumVirtualTokens} trained virtual key/value tokens per layer";

    public static PrefixTuningMethod Prefix(PrefixTuningConfig? c = null) => new("prefix", c ?? new PrefixTuningConfig());
    public static PrefixTuningMethod PTuningV2(PrefixTuningConfig? c = null) => new("ptuning", (c ?? new PrefixTuningConfig()) with { PrefixProjection = false });

    static readonly MethodOption Tokens = new("num_virtual_tokens", MethodOptionKind.Integer, "virtual tokens") { Shared = true };

    public IReadOnlyList<MethodOption> Options => Name == "prefix"
        ? [Tokens, new("encoder_hidden_size", MethodOptionKind.Integer, "MLP width") { Shared = true }, new("prefix_projection", MethodOptionKind.Boolean, "reparameterise with the MLP")]
        : [Tokens];

    public PeftConfig WithOption(PeftConfig? config, string key, string value, string where)
    {
        var c = config as PrefixTuningConfig ?? new PrefixTuningConfig();
        return key switch
        {
            "num_virtual_tokens" => c with { NumVirtualTokens = OptionValues.Int(value, where) },
            "encoder_hidden_size" => c with { EncoderHiddenSize = OptionValues.Int(value, where) },
            _ => c with { PrefixProjection = OptionValues.Bool(value, where) },
        };
    }

    public ITuningMethod Configure(PeftConfig config, TowerLayout? layout, Func<string, int[]>? encode, string context)
    {
        var c = ((PrefixTuningConfig)config).Validate(context);
        return layout is null ? this : Name == "prefix" ? Prefix(c) : PTuningV2(c);
    }

    public string? PeftType => "PREFIX_TUNING";
    public Type? ConfigType => typeof(PrefixTuningConfig);
    public bool CanMerge => false;

    public void Apply(nn.Module model, TowerLayout layout, IReadOnlyList<string> towers) =>
        PrefixTuning.Apply(model, Config, layout, towers, $"{Name}@{string.Join(",", towers)}");

    public void SaveAdapter(nn.Module model, TowerLayout layout, IReadOnlyList<string> towers, string dir, string? taskType) =>
        PeftAdapters.SavePromptLearning(model, dir, Config, null, taskType);

    public ITuningMethod Load(nn.Module model, PeftAdapterConfig config, IReadOnlyDictionary<string, Tensor> state, string source, bool trainable)
    {
        PeftAdapters.LoadPromptLearning(model, config, state, source, trainable);
        return config.Prefix!.PrefixProjection ? Prefix(config.Prefix) : PTuningV2(config.Prefix);
    }

    public void Finalize(nn.Module model, FinalizeMode mode) => PromptLearning.Finalize(this, mode, () => PrefixTuning.Unload(model));
}

/// <summary>What prompt-learning methods share at the end of their life: no merged form.</summary>
public static class PromptLearning
{
    /// <summary>Merge is refused (the virtual tokens are positions, not weights); KeepAdapter leaves the prompt in place;
    /// MergeOrRemove removes it (model/ is then the base, the prompt lives in adapter/).</summary>
    public static void Finalize(ITuningMethod method, FinalizeMode mode, Action remove)
    {
        if (mode == FinalizeMode.Merge)
            throw new MedPeftException($"{method.Name}: a prompt-learning adapter ({method.PeftType}) has no merged form (LORA, IA3 and LN_TUNING adapters merge); keep it as an adapter (--adapter)");
        if (mode == FinalizeMode.MergeOrRemove) remove();
    }
}
