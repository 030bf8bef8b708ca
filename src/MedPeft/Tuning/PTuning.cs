using System.Globalization;
using MedPeft.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MedPeft.Tuning;

/// <summary>P-tuning (v1, Liu et al. 2021 "GPT Understands, Too") settings with PEFT 0.11's PromptEncoderConfig names
/// and defaults: encoder_reparameterization_type "MLP", encoder_hidden_size null (= token_dim, as PEFT's
/// _prepare_prompt_learning_config fills it in), encoder_num_layers 2 (LSTM only: PEFT's MLP always has two hidden
/// layers and ignores it with a warning), encoder_dropout 0.</summary>
public sealed record PromptEncoderConfig : PromptLearningConfig
{
    public override string PeftType => "P_TUNING";
    /// <summary>PEFT has no default; 20 as MedPeft's prompt tuning, so the two methods differ only by the encoder.</summary>
    public PromptEncoderConfig() => NumVirtualTokens = 20;
    public int? EncoderHiddenSize { get; init; }
    public string EncoderReparameterizationType { get; init; } = "MLP";
    public int EncoderNumLayers { get; init; } = 2;
    [System.Text.Json.Serialization.JsonConverter(typeof(PythonFloatConverter))] public double EncoderDropout { get; init; }

    /// <summary>An adapter file may carry settings PEFT only warns about (encoder_num_layers with MLP).</summary>
    protected internal override void ValidateFile(string source)
    {
        base.ValidateFile(source);
        try { Validate(source, training: false); }
        catch (MedPeftException e) { throw new MedPeftException(e.Message.Replace($"{source}: ", $"{source}: field ")); }
    }

    public int HiddenSize(long tokenDim) => EncoderHiddenSize ?? (int)tokenDim;

    /// <param name="training">Also reject settings that would be silently ignored when building the encoder to train
    /// (encoder_num_layers with MLP); an adapter file may carry them (PEFT only warns).</param>
    public PromptEncoderConfig Validate(string source, bool training = true)
    {
        if (NumVirtualTokens <= 0) throw new MedPeftException($"{source}: num_virtual_tokens must be positive (got {NumVirtualTokens})");
        if (EncoderReparameterizationType is not ("MLP" or "LSTM"))
            throw new MedPeftException($"{source}: encoder_reparameterization_type must be MLP or LSTM (got \"{EncoderReparameterizationType}\")");
        if (EncoderHiddenSize is <= 0) throw new MedPeftException($"{source}: encoder_hidden_size must be positive (got {EncoderHiddenSize})");
        if (EncoderNumLayers <= 0) throw new MedPeftException($"{source}: encoder_num_layers must be positive (got {EncoderNumLayers})");
        if (EncoderDropout is < 0 or >= 1 || double.IsNaN(EncoderDropout))
            throw new MedPeftException($"{source}: encoder_dropout must be in [0, 1) (got {EncoderDropout.ToString(CultureInfo.InvariantCulture)})");
        if (training && EncoderReparameterizationType == "MLP" && EncoderNumLayers != 2)
            throw new MedPeftException($"{source}: encoder_num_layers {EncoderNumLayers} has no effect with the MLP encoder (PEFT's MLP always has 2 hidden layers); use LSTM or leave it at 2");
        return this;
    }
}

/// <summary>PEFT's PromptEncoder (P_TUNING, training form): <c>embedding</c> [N, token_dim] reparameterised by
/// <c>mlp_head</c> = Linear(token_dim, h) → ReLU → Linear(h, h) → ReLU → Linear(h, token_dim), or by the bidirectional
/// <c>lstm_head</c> (encoder_num_layers layers, hidden h, dropout between layers, batch first) followed by
/// <c>mlp_head</c> = Linear(2h, 2h) → ReLU → Linear(2h, token_dim). Registered as <c>prompt_encoder</c> on the tower,
/// like prompt tuning's PromptEmbedding.</summary>
public sealed class PromptEncoder : nn.Module<Tensor, Tensor>
{
    public Embedding embedding;
    public LSTM? lstm_head;
    public Sequential mlp_head;

    public PromptEncoder(long numVirtualTokens, long tokenDim, PromptEncoderConfig config, Device device) : base(nameof(PromptEncoder))
    {
        long h = config.HiddenSize(tokenDim);
        const ScalarType f32 = ScalarType.Float32;
        embedding = nn.Embedding(numVirtualTokens, tokenDim, device: device, dtype: f32);
        if (config.EncoderReparameterizationType == "LSTM")
        {
            lstm_head = nn.LSTM(tokenDim, h, config.EncoderNumLayers, dropout: config.EncoderDropout, bidirectional: true, batchFirst: true, device: device, dtype: f32);
            mlp_head = nn.Sequential(
                ("0", nn.Linear(2 * h, 2 * h, device: device, dtype: f32)),
                ("1", nn.ReLU()),
                ("2", nn.Linear(2 * h, tokenDim, device: device, dtype: f32)));
        }
        else
            mlp_head = nn.Sequential(
                ("0", nn.Linear(tokenDim, h, device: device, dtype: f32)),
                ("1", nn.ReLU()),
                ("2", nn.Linear(h, h, device: device, dtype: f32)),
                ("3", nn.ReLU()),
                ("4", nn.Linear(h, tokenDim, device: device, dtype: f32)));
        RegisterComponents();
    }

    /// <summary>Virtual token indices [B, N] → prompt embeddings [B, N, token_dim].</summary>
    public override Tensor forward(Tensor indices)
    {
        using var scope = torch.NewDisposeScope();
        var e = embedding.forward(indices);
        if (lstm_head is not null) e = lstm_head.call(e).Item1;
        return mlp_head.forward(e).MoveToOuterDisposeScope();
    }

    /// <summary>The N virtual tokens through the encoder: [N, token_dim] (PEFT's get_prompt_embedding_to_save before
    /// detaching). Computed once per forward for the whole batch: every row of PEFT's [B, N] prompt-token batch is the
    /// same, so this equals PEFT's output exactly, except that with encoder_dropout &gt; 0 (LSTM, training) all rows
    /// share one dropout mask.</summary>
    public Tensor Encode()
    {
        using var scope = torch.NewDisposeScope();
        var tokens = torch.arange(embedding.weight!.shape[0], dtype: ScalarType.Int64, device: embedding.weight.device).unsqueeze(0);
        return forward(tokens)[0].MoveToOuterDisposeScope();
    }
}

/// <summary>"ptuning-v1": PEFT's P_TUNING — N virtual token embeddings passed through the prompt encoder (MLP or LSTM,
/// see <see cref="PromptEncoder"/>) and prepended to the language side's input embeddings exactly where prompt tuning
/// prepends them (same code path: <see cref="PromptTuning"/>). Trainable parameters = the embedding (N × token_dim) +
/// every encoder parameter, which is what inspect/study report. Saved as PEFT does: peft_type P_TUNING with
/// PromptEncoderConfig's fields and <c>prompt_embeddings</c> = the encoder's output for the N tokens; loading such a
/// file gives an inference adapter that prepends the stored embeddings directly (PEFT with inference_mode). Not to be
/// confused with MedPeft's "ptuning" = P-tuning v2 (a per-layer prefix).</summary>
public sealed class PTuningMethod(PromptEncoderConfig? config = null) : ITuningMethod
{
    public PromptEncoderConfig Config { get; } = config ?? new PromptEncoderConfig();
    public string Name => "ptuning-v1";
    public string Description => $"P-tuning (v1): {Config.NumVirtualTokens} virtual tokens through an {Config.EncoderReparameterizationType} prompt encoder before the language input";

    public IReadOnlyList<MethodOption> Options { get; } =
    [
        new("num_virtual_tokens", MethodOptionKind.Integer, "virtual tokens") { Shared = true },
        new("encoder_hidden_size", MethodOptionKind.Integer, "prompt encoder width (default token_dim)") { Shared = true },
        new("encoder_reparameterization_type", MethodOptionKind.Text, "MLP or LSTM"),
        new("encoder_num_layers", MethodOptionKind.Integer, "LSTM layers"), new("encoder_dropout", MethodOptionKind.Number, "LSTM dropout"),
    ];

    public PeftConfig WithOption(PeftConfig? config, string key, string value, string where)
    {
        var c = config as PromptEncoderConfig ?? new PromptEncoderConfig();
        return key switch
        {
            "num_virtual_tokens" => c with { NumVirtualTokens = OptionValues.Int(value, where) },
            "encoder_hidden_size" => c with { EncoderHiddenSize = OptionValues.Int(value, where) },
            "encoder_reparameterization_type" => c with { EncoderReparameterizationType = value.ToUpperInvariant() },
            "encoder_num_layers" => c with { EncoderNumLayers = OptionValues.Int(value, where) },
            _ => c with { EncoderDropout = OptionValues.Num(value, where) },
        };
    }

    public ITuningMethod Configure(PeftConfig config, TowerLayout? layout, Func<string, int[]>? encode, string context)
    {
        var c = ((PromptEncoderConfig)config).Validate(context);
        return layout is null ? this : new PTuningMethod(c);
    }

    public string? PeftType => "P_TUNING";
    public Type? ConfigType => typeof(PromptEncoderConfig);
    public bool CanMerge => false;

    public void Apply(nn.Module model, TowerLayout layout, IReadOnlyList<string> towers) =>
        PromptTuning.Apply(model, Config.NumVirtualTokens, Config, layout, towers, $"{Name}@{string.Join(",", towers)}");

    /// <summary>The settings live on the towers (each tower's encoder).</summary>
    public void SaveAdapter(nn.Module model, TowerLayout layout, IReadOnlyList<string> towers, string dir, string? taskType) =>
        PeftAdapters.SavePromptLearning(model, dir, null, null, taskType);

    public ITuningMethod Load(nn.Module model, PeftAdapterConfig config, IReadOnlyDictionary<string, Tensor> state, string source, bool trainable)
    {
        PeftAdapters.LoadPromptLearning(model, config, state, source, trainable);
        return new PTuningMethod(config.PTuning);
    }

    public void Finalize(nn.Module model, FinalizeMode mode) => PromptLearning.Finalize(this, mode, () => PromptTuning.Unload(model));
}
