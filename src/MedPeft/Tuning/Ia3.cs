using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using System.Text.RegularExpressions;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MedPeft.Tuning;

/// <summary>(IA)³ settings with PEFT 0.11's meaning. <see cref="TargetModules"/> match module names as LoRA's do (exact
/// or suffix after a dot; <see cref="TargetRegex"/> = full-match regex). A targeted module is a feed-forward module
/// when its name ends with one of <see cref="FeedforwardModules"/> (PEFT's plain <c>endswith</c>), or full-matches
/// <see cref="FeedforwardRegex"/>: its vector scales the layer's input, otherwise the layer's output. Also PEFT's
/// IA3Config as written to adapter_config.json.</summary>
public sealed record Ia3Config : PeftConfig
{
    public override string PeftType => "IA3";
    [JsonIgnore] public IReadOnlyList<string> TargetModules { get; init; } = ["k_proj", "v_proj", "down_proj"];
    [JsonIgnore] public string? TargetRegex { get; init; }
    [JsonIgnore] public IReadOnlyList<string> FeedforwardModules { get; init; } = ["down_proj"];
    [JsonIgnore] public string? FeedforwardRegex { get; init; }
    public bool InitIa3Weights { get; init; } = true;
    public bool FanInFanOut { get; init; }
    public IReadOnlyList<string>? ModulesToSave { get; init; }

    [JsonInclude, JsonRequired, JsonPropertyName("target_modules"), JsonConverter(typeof(ListOrRegexConverter))]
    internal JsonNode? TargetModulesJson
    {
        get => ListOrRegexConverter.ToJson(TargetModules, TargetRegex);
        init => (TargetModules, TargetRegex) = ListOrRegexConverter.FromJson(value);
    }

    [JsonInclude, JsonPropertyName("feedforward_modules"), JsonConverter(typeof(ListOrRegexConverter))]
    internal JsonNode? FeedforwardModulesJson
    {
        get => ListOrRegexConverter.ToJson(FeedforwardModules, FeedforwardRegex);
        init => (FeedforwardModules, FeedforwardRegex) = ListOrRegexConverter.FromJson(value);
    }

    /// <summary>PEFT's default is no feed-forward module.</summary>
    protected internal override IEnumerable<(string Field, JsonNode? Value)> PeftDefaults => [("feedforward_modules", null)];

    protected internal override void ValidateFile(string source)
    {
        base.ValidateFile(source);
        if (FanInFanOut) throw PeftConfigJson.Unsupported(source, "fan_in_fan_out", "true (Conv1D layers)");
        Validate(source);
    }

    /// <summary>PEFT's TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING / _FEEDFORWARD_MODULES_MAPPING for "llama".</summary>
    public static readonly Ia3Config Llama = new();
    /// <summary>The same mappings for "bert" (BLIP's text towers are BERTs); MILE's IA3 setting on MISS (paper-facts.md).
    /// "output.dense" is a suffix, so it also selects the attention output projections (self and cross), as in PEFT.</summary>
    public static readonly Ia3Config Bert = new() { TargetModules = ["key", "value", "output.dense"], FeedforwardModules = ["output.dense"] };

    public bool Targets(string moduleName) => LoraConfig.Targets(moduleName, TargetModules, TargetRegex);

    public bool IsFeedforward(string moduleName) =>
        FeedforwardRegex is not null ? Regex.IsMatch(moduleName, "^(?:" + FeedforwardRegex + ")$", RegexOptions.CultureInvariant)
            : FeedforwardModules.Any(f => moduleName.EndsWith(f, StringComparison.Ordinal));

    public Ia3Config Validate(string source)
    {
        if (TargetRegex is null && TargetModules.Count == 0) throw new MedPeftException($"{source}: IA3 target_modules is empty");
        if (TargetRegex is null && FeedforwardRegex is null && !FeedforwardModules.All(f => TargetModules.Contains(f)))
            throw new MedPeftException($"{source}: IA3 feedforward_modules [{string.Join(", ", FeedforwardModules)}] must be a subset of target_modules [{string.Join(", ", TargetModules)}]");
        return this;
    }
}

/// <summary>PEFT's ia3.Linear: wraps the Linear (<c>base_layer</c>) with a vector <c>ia3_l</c>, initialised to ones,
/// that multiplies the layer's output (keys, values) or — for a feed-forward module — its input:
/// <c>y = W(x ⊙ l) + b</c>. Computed in the vector's dtype (fp32) and cast back, as PEFT. The vector is 1-D: [in] for
/// a feed-forward module, [out] otherwise — PEFT stores [1, in] / [out, 1]; the adapter file uses PEFT's shapes, and
/// the 1-D form keeps the vector out of weight decay, which would pull it towards 0 instead of its identity value 1.
/// Merge multiplies the weight's columns, or its rows and the bias.</summary>
public sealed class Ia3Linear : AdaptedLinear
{
    public Parameter ia3_l;
    public bool IsFeedforward { get; }
    public Parameter Vector => ia3_l;

    public Ia3Linear(string name, Linear baseLayer, bool feedforward, bool initOnes) : base(nameof(Ia3Linear), name, baseLayer)
    {
        var w = baseLayer.weight!;
        IsFeedforward = feedforward;
        long size = feedforward ? w.shape[1] : w.shape[0];
        ia3_l = new Parameter(initOnes ? torch.ones(size, dtype: ScalarType.Float32, device: w.device)
            : torch.randn(size, dtype: ScalarType.Float32, device: w.device), requires_grad: true);
        register_parameter("ia3_l", ia3_l);
    }

    /// <summary>The vector in PEFT's stored shape: [1, in] (feed-forward) or [out, 1].</summary>
    public Tensor PeftShaped() => IsFeedforward ? ia3_l.view(1, -1) : ia3_l.view(-1, 1);

    public override Tensor forward(Tensor x)
    {
        if (Merged) return base_layer.call(x);
        using var scope = torch.NewDisposeScope();
        if (IsFeedforward) return base_layer.call((x.to(ScalarType.Float32) * ia3_l).to(x.dtype)).MoveToOuterDisposeScope();
        var y = base_layer.call(x);
        return (y.to(ScalarType.Float32) * ia3_l).to(y.dtype).MoveToOuterDisposeScope();
    }

    /// <summary>W·diag(l) for a feed-forward module, diag(l)·W and b⊙l otherwise.</summary>
    public override void Merge()
    {
        if (Merged) return;
        using var _ = torch.no_grad();
        var w = base_layer.weight!;
        w.copy_((w.to(ScalarType.Float32) * PeftShaped()).to(w.dtype));
        if (!IsFeedforward && base_layer.bias is { } b) b.copy_((b.to(ScalarType.Float32) * ia3_l).to(b.dtype));
        Merged = true;
    }

    /// <summary>Divides the vector out again (PEFT adds 1e-8 to avoid division by zero; inexact by rounding).</summary>
    public override void Unmerge()
    {
        if (!Merged) return;
        using var _ = torch.no_grad();
        var w = base_layer.weight!;
        w.copy_((w.to(ScalarType.Float32) / (PeftShaped() + 1e-8)).to(w.dtype));
        if (!IsFeedforward && base_layer.bias is { } b) b.copy_((b.to(ScalarType.Float32) / (ia3_l + 1e-8)).to(b.dtype));
        Merged = false;
    }

    protected override void DisposeAdapter() => ia3_l.Dispose();
}

/// <summary>(IA)³ (Liu et al. 2022, "Few-Shot Parameter-Efficient Fine-Tuning is Better and Cheaper than In-Context
/// Learning") as PEFT 0.11 implements it for nn.Linear: each targeted Linear is replaced by an <see cref="Ia3Linear"/>
/// wrapping it.</summary>
public static class Ia3
{
    public static List<Ia3Linear> LayersOf(nn.Module model) => AdaptedLinear.In<Ia3Linear>(model);

    /// <summary>Wraps every targeted nn.Linear passing <paramref name="within"/>. Throws when nothing matches or a match is
    /// not an nn.Linear. Already adapted layers are kept (vector set trainable).</summary>
    public static List<Ia3Linear> Apply(nn.Module model, Ia3Config config, Func<string, bool>? within = null, string source = "IA3")
    {
        config.Validate(source);
        var layers = AdaptedLinear.WrapTargets(model, n => (within is null || within(n)) && config.Targets(n),
            (name, linear) => new Ia3Linear(name, linear, config.IsFeedforward(name), config.InitIa3Weights), "IA3",
            config.TargetRegex is not null ? $"\"{config.TargetRegex}\"" : "[" + string.Join(", ", config.TargetModules) + "]", source);
        foreach (var l in layers) l.ia3_l.requires_grad = true;
        return layers;
    }

    public static void Merge(nn.Module model) { foreach (var l in LayersOf(model)) l.Merge(); }

    public static void Unmerge(nn.Module model) { foreach (var l in LayersOf(model)) l.Unmerge(); }

    /// <summary>Merges, then unwraps: a plain model with the base parameter names only.</summary>
    public static void MergeAndUnload(nn.Module model) => AdaptedLinear.MergeAndUnload<Ia3Linear>(model);

    /// <summary>The config to save so that PEFT, which matches target_modules over the whole model, adapts exactly the
    /// modules adapted here (a tower-scoped "ia3@llm" would otherwise also hit CLIP's k_proj/v_proj).</summary>
    public static Ia3Config ScopedConfig(nn.Module model, Ia3Config config, TowerLayout layout, IEnumerable<string> towers)
    {
        var adapted = LayersOf(model).Select(l => l.Name).ToHashSet();
        var regex = TowerScope.ScopedTargetRegex(AdaptedLinear.AdaptableNames(model), adapted,
            r => r is null ? config.Targets : n => LoraConfig.Targets(n, [], r), config.TargetModules, layout, towers);
        return regex is null ? config : config with { TargetRegex = regex };
    }

    /// <summary>The vectors by PEFT key (<c>base_model.model.&lt;module&gt;.ia3_l</c>) in PEFT's shapes (views).</summary>
    public static Dictionary<string, Tensor> AdapterTensors(nn.Module model) =>
        LayersOf(model).ToDictionary(l => PeftAdapters.Prefix + l.Name + ".ia3_l", l => l.PeftShaped());
}

/// <summary>IA3 as a tuning method ("ia3", "ia3@llm", "ia3@text_decoder", …): vectors on the targeted Linear layers
/// inside the chosen towers. Defaults are PEFT's per model type — LLaMA k_proj, v_proj, down_proj (feed-forward:
/// down_proj); BERT-like BLIP text towers key, value, output.dense (feed-forward: output.dense), which is also MILE's
/// setting on MISS (paper-facts.md). Saved as PEFT's IA3; merges into the weights.</summary>
public sealed class Ia3Method(Ia3Config? config = null) : ITuningMethod
{
    public Ia3Config? Config { get; } = config;
    public string Name => "ia3";
    public string Description => "(IA)³ scaling vectors on keys, values and feed-forward inputs";
    public string? PeftType => "IA3";
    public Type? ConfigType => typeof(Ia3Config);
    public bool CanMerge => true;

    public static Ia3Config DefaultFor(TowerLayout layout) =>
        ReferenceEquals(layout, TowerLayout.Blip) ? Ia3Config.Bert : Ia3Config.Llama;

    public IReadOnlyList<MethodOption> Options { get; } =
        [new("targets", MethodOptionKind.List, "target_modules suffixes"), new("feedforward", MethodOptionKind.List, "feedforward_modules suffixes")];

    public PeftConfig WithOption(PeftConfig? config, string key, string value, string where)
    {
        var c = config as Ia3Config ?? new Ia3Config { TargetModules = [], FeedforwardModules = [] };   // empty: the family's defaults
        return key == "targets" ? c with { TargetModules = OptionValues.List(value) } : c with { FeedforwardModules = OptionValues.List(value) };
    }

    public ITuningMethod Configure(PeftConfig config, TowerLayout? layout, Func<string, int[]>? encode, string context)
    {
        var c = (Ia3Config)config;
        if (layout is null) return this;
        var d = DefaultFor(layout);
        return new Ia3Method(c.TargetModules.Count == 0 && c.TargetRegex is null
            ? c with { TargetModules = d.TargetModules, FeedforwardModules = c.FeedforwardModules.Count == 0 ? d.FeedforwardModules : c.FeedforwardModules }
            : c);
    }

    public void Apply(nn.Module model, TowerLayout layout, IReadOnlyList<string> towers) =>
        Ia3.Apply(model, Config ?? DefaultFor(layout), TowerScope.Within(layout, towers), $"ia3@{string.Join(",", towers)}");

    public void SaveAdapter(nn.Module model, TowerLayout layout, IReadOnlyList<string> towers, string dir, string? taskType) =>
        PeftAdapters.SaveIa3(model, dir, Ia3.ScopedConfig(model, Config ?? DefaultFor(layout), layout, towers), taskType);

    public ITuningMethod Load(nn.Module model, PeftAdapterConfig config, IReadOnlyDictionary<string, Tensor> state, string source, bool trainable)
    {
        Ia3.Apply(model, config.Ia3!, source: Path.Combine(source, PeftAdapters.ConfigFile));
        PeftAdapters.CopyInto(Ia3.AdapterTensors(model), state, source);
        foreach (var l in Ia3.LayersOf(model)) l.ia3_l.requires_grad = trainable;
        return new Ia3Method(config.Ia3);
    }

    public void Finalize(nn.Module model, FinalizeMode mode)
    {
        if (mode != FinalizeMode.KeepAdapter) Ia3.MergeAndUnload(model);
    }
}
