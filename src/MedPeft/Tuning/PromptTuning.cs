using System.Runtime.CompilerServices;
using MedPeft.Models;
using MedPeft.Models.Blip;
using MedPeft.Models.Llama;
using MedPeft.Models.Llava;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MedPeft.Tuning;

/// <summary>Prompt-tuning settings with PEFT 0.11's PromptTuningConfig names. "RANDOM" init is nn.Embedding's N(0, 1)
/// (PEFT's default); "TEXT" copies the word embeddings of <see cref="InitTokenIds"/> (the tokenized
/// prompt_tuning_init_text, repeated / cut to N as PEFT does).</summary>
public sealed record PromptTuningConfig : PromptLearningConfig
{
    public override string PeftType => "PROMPT_TUNING";
    /// <summary>20 soft tokens: Lester et al. 2021 (The Power of Scale for Parameter-Efficient Prompt Tuning) found
    /// 20 tokens to capture most of the gain (Fig. 3a); more helped little.</summary>
    public PromptTuningConfig() => NumVirtualTokens = 20;
    public string PromptTuningInit { get; init; } = "RANDOM";
    public string? PromptTuningInitText { get; init; }
    public string? TokenizerNameOrPath { get; init; }
    public System.Text.Json.JsonElement? TokenizerKwargs { get; init; }
    /// <summary>The tokenized init text (MedPeft's, not a PEFT field).</summary>
    [System.Text.Json.Serialization.JsonIgnore] public IReadOnlyList<long>? InitTokenIds { get; init; }

    protected internal override void ValidateFile(string source)
    {
        base.ValidateFile(source);
        if (PromptTuningInit is not ("RANDOM" or "TEXT")) throw new MedPeftException($"{source}: field \"prompt_tuning_init\" must be RANDOM or TEXT (got \"{PromptTuningInit}\")");
    }

    public PromptTuningConfig Validate(string source)
    {
        if (NumVirtualTokens <= 0) throw new MedPeftException($"{source}: num_virtual_tokens must be positive (got {NumVirtualTokens})");
        if (PromptTuningInit is not ("RANDOM" or "TEXT")) throw new MedPeftException($"{source}: prompt_tuning_init must be RANDOM or TEXT (got \"{PromptTuningInit}\")");
        if (PromptTuningInit == "TEXT" && (InitTokenIds is null || InitTokenIds.Count == 0))
            throw new MedPeftException($"{source}: prompt_tuning_init TEXT needs the tokenized prompt_tuning_init_text");
        return this;
    }
}

/// <summary>PEFT's PromptEmbedding: <c>embedding</c> [N, token_dim], registered as <c>prompt_encoder</c> on the
/// adapted tower.</summary>
public sealed class PromptEmbedding : nn.Module<Tensor, Tensor>
{
    public Embedding embedding;

    public PromptEmbedding(long n, long tokenDim, Device device) : base(nameof(PromptEmbedding))
    {
        embedding = nn.Embedding(n, tokenDim, device: device, dtype: ScalarType.Float32);
        RegisterComponents();
    }

    public override Tensor forward(Tensor tokens) => embedding.forward(tokens);
}

/// <summary>The soft prompt of one tower: prompt tuning's embedding, or P-tuning's embedding through its encoder.</summary>
public sealed class PromptTower : IInputPrompt
{
    public required string Tower { get; init; }
    public required nn.Module Root { get; init; }
    /// <summary>The module registered as prompt_encoder (PromptEmbedding or PromptEncoder).</summary>
    public required nn.Module Encoder { get; init; }
    public required Embedding Embedding { get; init; }
    /// <summary>P-tuning's training-time encoder; null = the embedding is the prompt (prompt tuning, or a loaded
    /// P_TUNING adapter, whose file holds the encoder's output).</summary>
    public PromptEncoder? Reparameterization { get; init; }
    /// <summary>P-tuning's settings (null = prompt tuning): what the tower is saved as.</summary>
    public PromptEncoderConfig? PTuning { get; init; }
    public BlipTextEmbeddings? BlipEmbeddings { get; init; }
    public LlavaForConditionalGeneration? Llava { get; init; }

    public long Length => Embedding.weight!.shape[0];
    public long TokenDim => Embedding.weight!.shape[1];

    /// <summary>The virtual tokens' input embeddings [N, token_dim] (with gradient when training).</summary>
    public Tensor Prompt() => Reparameterization is null ? Embedding.weight! : Reparameterization.Encode();

    public Tensor Embeddings(long batch, ScalarType dtype) =>
        Prompt().unsqueeze(0).expand(batch, -1, -1).to(dtype);

    /// <summary>PEFT's causal-LM prompt tuning on LLaVA's merged sequence: the soft prompt goes first, the mask gets
    /// ones, labels −100 for the virtual tokens, positions are cumsum(mask) − 1 (pads at 1) over the longer mask.</summary>
    internal LlavaMerged Prepend(LlavaMerged m)
    {
        using var scope = torch.NewDisposeScope();
        long b = m.InputsEmbeds.shape[0], n = Length;
        var dev = m.InputsEmbeds.device;
        var embeds = torch.cat([Embeddings(b, m.InputsEmbeds.dtype), m.InputsEmbeds], 1);
        var mask = torch.cat([torch.ones(b, n, dtype: m.AttentionMask.dtype, device: dev), m.AttentionMask], 1);
        var pos = (mask.to(ScalarType.Int64).cumsum(-1) - 1).masked_fill(mask.eq(0), 1);
        var labels = m.Labels is null ? null : torch.cat([torch.full(b, n, -100L, dtype: m.Labels.dtype, device: dev), m.Labels], 1);
        return new LlavaMerged(embeds.MoveToOuterDisposeScope(), mask.MoveToOuterDisposeScope(), pos.MoveToOuterDisposeScope(), labels?.MoveToOuterDisposeScope());
    }
}

/// <summary>Prompt tuning (Lester et al. 2021) as PEFT 0.11: N trained embeddings prepended to the language side's
/// input embeddings. LLaVA: the LLM input after the image merge (mask ones, labels −100, positions recomputed), in
/// forward and generation. BLIP: the text encoder's question embeddings (before position embeddings and LayerNorm, as
/// PEFT prepends to inputs_embeds; the decoder cross-attends to the soft tokens too) — or, scoped to text_decoder, the
/// decoder's input, whose soft-token outputs are dropped (no loss, no generation step on them). With no tower given
/// the language input is chosen: BLIP VQA text_encoder, BLIP captioning text_decoder, LLaVA llm.</summary>
public static class PromptTuning
{
    static readonly ConditionalWeakTable<nn.Module, PromptTower> Towers = new();

    public static List<PromptTower> TowersOf(nn.Module model)
    {
        var list = new List<PromptTower>();
        foreach (var (_, m) in model.named_modules())
            if (Towers.TryGetValue(m, out var t)) list.Add(t);
        return list;
    }

    public static List<string> DefaultTowers(nn.Module model, TowerLayout layout, IReadOnlyList<string> towers, string source)
    {
        if (!TowerScope.IsAll(layout, towers)) return PrefixTuning.ApplicableTowers(layout, towers, source);
        if (model is BlipForQuestionAnswering) return ["text_encoder"];
        if (model is BlipForConditionalGeneration) return ["text_decoder"];
        return PrefixTuning.ApplicableTowers(layout, towers, source);
    }

    public static List<PromptTower> Apply(nn.Module model, PromptTuningConfig config, TowerLayout layout, IReadOnlyList<string> towers, string source = "prompt")
    {
        config.Validate(source);
        var result = Apply(model, config.NumVirtualTokens, null, layout, towers, source, out var created);
        if (config.PromptTuningInit == "TEXT") foreach (var pt in created) InitFromText(pt, config.InitTokenIds!);
        return result;
    }

    /// <summary>P-tuning (<paramref name="pTuning"/> set) or prompt tuning on the language towers: one prompt_encoder
    /// per tower, prepended by the same hooks.</summary>
    public static List<PromptTower> Apply(nn.Module model, int n, PromptEncoderConfig? pTuning, TowerLayout layout, IReadOnlyList<string> towers, string source) =>
        Apply(model, n, pTuning, layout, towers, source, out _);

    static List<PromptTower> Apply(nn.Module model, int n, PromptEncoderConfig? pTuning, TowerLayout layout, IReadOnlyList<string> towers, string source, out List<PromptTower> created)
    {
        pTuning?.Validate(source);
        var result = new List<PromptTower>();
        created = [];
        foreach (var tower in DefaultTowers(model, layout, towers, source))
        {
            var name = layout.Towers[tower].TrimEnd('.');
            var root = model.named_modules().FirstOrDefault(x => x.name == name).module;
            if (root is null) continue;   // e.g. text_encoder in a captioning model
            if (Towers.TryGetValue(root, out var existing))
            {
                if ((existing.PTuning is null) != (pTuning is null))
                    throw new MedPeftException($"{source}: tower {tower} already has a {(existing.PTuning is null ? "prompt-tuning" : "P-tuning")} prompt; one soft prompt per input");
                foreach (var p in existing.Encoder.parameters()) p.requires_grad = true;
                result.Add(existing); continue;
            }
            var pt = Attach(model, tower, root, n, source, pTuning);
            created.Add(pt);
            result.Add(pt);
        }
        if (result.Count == 0) throw new MedPeftException($"{source}: no language tower to adapt in [{string.Join(", ", towers)}]");
        return result;
    }

    /// <param name="pTuning">P-tuning settings: with <paramref name="inference"/> false the tower gets PEFT's
    /// PromptEncoder (trained through the MLP/LSTM); with true a plain embedding that will hold a saved adapter's
    /// encoder output (PEFT's inference_mode).</param>
    internal static PromptTower Attach(nn.Module model, string tower, nn.Module root, int n, string source, PromptEncoderConfig? pTuning = null, bool inference = false)
    {
        var device = root.parameters().First().device;
        LlavaForConditionalGeneration? llava = null;
        BlipTextEmbeddings? blip = null;
        long tokenDim;
        if (root is LlamaForCausalLM lm)
        {
            llava = model as LlavaForConditionalGeneration
                ?? throw new MedPeftException($"{source}: prompt tuning on a LLaMA tower needs the LLaVA model around it");
            tokenDim = lm.model.Config.HiddenSize;
        }
        else
        {
            var bert = root as BlipTextModel ?? (root as BlipTextLMHeadModel)?.bert
                ?? throw new MedPeftException($"{source}: tower {tower} ({root.GetType().Name}) has no text input prompt tuning supports");
            blip = bert.embeddings;
            tokenDim = bert.embeddings.word_embeddings.weight!.shape[1];
        }
        nn.Module encoder; Embedding embedding; PromptEncoder? reparam = null;
        if (pTuning is not null && !inference) { reparam = new PromptEncoder(n, tokenDim, pTuning, device); encoder = reparam; embedding = reparam.embedding; }
        else { var pe = new PromptEmbedding(n, tokenDim, device); encoder = pe; embedding = pe.embedding; }
        root.register_module("prompt_encoder", encoder);
        var pt = new PromptTower
        {
            Tower = tower, Root = root, Encoder = encoder, Embedding = embedding, Reparameterization = reparam, PTuning = pTuning,
            BlipEmbeddings = blip, Llava = llava,
        };
        if (llava is not null) llava.InputPrompt = pt.Prepend;
        else blip!.Prompt = pt;
        foreach (var p in encoder.parameters()) p.requires_grad = true;
        Towers.Add(root, pt);
        return pt;
    }

    /// <summary>PEFT's TEXT init: token ids repeated to at least N, cut to N, their word embeddings copied (fp32).</summary>
    static void InitFromText(PromptTower pt, IReadOnlyList<long> ids)
    {
        long n = pt.Length;
        var reps = (int)Math.Ceiling((double)n / ids.Count);
        var chosen = Enumerable.Repeat(ids, reps).SelectMany(x => x).Take((int)n).ToArray();
        var words = pt.Root is LlamaForCausalLM lm ? lm.model.embed_tokens.weight : pt.BlipEmbeddings!.word_embeddings.weight;
        using var _ = torch.no_grad();
        var w = pt.Embedding.weight!;
        w.copy_(words.index_select(0, torch.tensor(chosen, device: words.device)).to(ScalarType.Float32));
    }

    public static void Unload(nn.Module model)
    {
        foreach (var t in TowersOf(model))
        {
            if (t.BlipEmbeddings is not null) t.BlipEmbeddings.Prompt = null;
            if (t.Llava is not null) t.Llava.InputPrompt = null;
            ModuleSurgery.RemoveChild(t.Root, "prompt_encoder");
            Towers.Remove(t.Root);
            t.Encoder.Dispose();
        }
    }
}

/// <summary>"prompt": soft prompt tuning (see <see cref="PromptTuning"/>).</summary>
public sealed class PromptTuningMethod(PromptTuningConfig? config = null) : ITuningMethod
{
    public PromptTuningConfig Config { get; } = config ?? new PromptTuningConfig();
    public string Name => "prompt";
    public string Description => $"prompt tuning: {Config.NumVirtualTokens} soft tokens before the language input";

    public IReadOnlyList<MethodOption> Options { get; } =
        [new("num_virtual_tokens", MethodOptionKind.Integer, "virtual tokens") { Shared = true }, new("prompt_init_text", MethodOptionKind.Text, "TEXT init from this text's word embeddings")];

    public PeftConfig WithOption(PeftConfig? config, string key, string value, string where)
    {
        var c = config as PromptTuningConfig ?? new PromptTuningConfig();
        return key == "num_virtual_tokens" ? c with { NumVirtualTokens = OptionValues.Int(value, where) }
            : value.Length == 0 ? throw new MedPeftException($"{where}: empty text")
            : c with { PromptTuningInit = "TEXT", PromptTuningInitText = value };
    }

    /// <summary>A TEXT init is tokenized with <paramref name="encode"/> (the model's tokenizer with its special tokens,
    /// as PEFT calls the tokenizer).</summary>
    public ITuningMethod Configure(PeftConfig config, TowerLayout? layout, Func<string, int[]>? encode, string context)
    {
        var c = (PromptTuningConfig)config;
        if (c.NumVirtualTokens <= 0) throw new MedPeftException($"{context}: num_virtual_tokens must be positive (got {c.NumVirtualTokens})");
        if (layout is null) return this;
        if (c.PromptTuningInit == "TEXT" && c.InitTokenIds is null && c.PromptTuningInitText is { } text)
        {
            if (encode is null) throw new MedPeftException($"prompt_init_text \"{text}\": no tokenizer to tokenize it with here");
            c = c with { InitTokenIds = encode(text).Select(i => (long)i).ToList() };
        }
        return new PromptTuningMethod(c);
    }

    public string? PeftType => "PROMPT_TUNING";
    public Type? ConfigType => typeof(PromptTuningConfig);
    public bool CanMerge => false;

    public void Apply(nn.Module model, TowerLayout layout, IReadOnlyList<string> towers) =>
        PromptTuning.Apply(model, Config, layout, towers, $"prompt@{string.Join(",", towers)}");

    public void SaveAdapter(nn.Module model, TowerLayout layout, IReadOnlyList<string> towers, string dir, string? taskType) =>
        PeftAdapters.SavePromptLearning(model, dir, null, Config, taskType);

    public ITuningMethod Load(nn.Module model, PeftAdapterConfig config, IReadOnlyDictionary<string, Tensor> state, string source, bool trainable)
    {
        PeftAdapters.LoadPromptLearning(model, config, state, source, trainable);
        return new PromptTuningMethod(config.Prompt);
    }

    public void Finalize(nn.Module model, FinalizeMode mode) => PromptLearning.Finalize(this, mode, () => PromptTuning.Unload(model));
}
