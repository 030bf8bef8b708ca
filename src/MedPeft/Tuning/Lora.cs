using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using System.Text.RegularExpressions;
using MedPeft.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MedPeft.Tuning;

/// <summary>LoRA settings with PEFT's (0.11) meaning. <see cref="TargetModules"/> matches module names by suffix
/// (<c>name == t</c> or <c>name.EndsWith("." + t)</c>); <see cref="TargetRegex"/>, when set, replaces it with a
/// full-match regex over the whole module name (PEFT's string form of target_modules). Scaling is
/// <c>lora_alpha / r</c>, or <c>lora_alpha / √r</c> with <see cref="UseRslora"/>. Only bias "none" is supported.
/// <see cref="UseDora"/> is PEFT's use_dora (the "dora" method). Also PEFT's LoraConfig as written to adapter_config.json
/// (every 0.11 field; the ones MedPeft does not implement must keep their neutral values, see ValidateFile).</summary>
public sealed record LoraConfig : PeftConfig
{
    public override string PeftType => "LORA";
    public int R { get; init; } = 8;
    [JsonConverter(typeof(IntIfIntegralConverter))] public double LoraAlpha { get; init; } = 32;
    [JsonConverter(typeof(PythonFloatConverter))] public double LoraDropout { get; init; } = 0.1;
    [JsonIgnore] public IReadOnlyList<string> TargetModules { get; init; } = ["q_proj", "v_proj"];
    [JsonIgnore] public string? TargetRegex { get; init; }
    public bool UseRslora { get; init; }
    public bool UseDora { get; init; }
    public string Bias { get; init; } = "none";
    public bool FanInFanOut { get; init; }
    public IReadOnlyList<string>? ModulesToSave { get; init; }
    /// <summary>true, "gaussian", "pissa", "loftq" …: how PEFT initialised the factors (a loaded adapter's don't matter).</summary>
    public JsonElement? InitLoraWeights { get; init; } = PeftConfigJson.True;
    public JsonElement? LayersToTransform { get; init; }
    public JsonElement? LayersPattern { get; init; }
    public IReadOnlyDictionary<string, JsonElement> RankPattern { get; init; } = PeftConfigJson.EmptyObject;
    public IReadOnlyDictionary<string, JsonElement> AlphaPattern { get; init; } = PeftConfigJson.EmptyObject;
    public JsonElement? MegatronConfig { get; init; }
    public string? MegatronCore { get; init; } = "megatron.core";
    public IReadOnlyDictionary<string, JsonElement> LoftqConfig { get; init; } = PeftConfigJson.EmptyObject;
    public JsonElement? LayerReplication { get; init; }

    /// <summary>target_modules in the file: the list, or the regex string.</summary>
    [JsonInclude, JsonRequired, JsonPropertyName("target_modules"), JsonConverter(typeof(ListOrRegexConverter))]
    internal JsonNode? TargetModulesJson
    {
        get => ListOrRegexConverter.ToJson(TargetModules, TargetRegex);
        init => (TargetModules, TargetRegex) = ListOrRegexConverter.FromJson(value);
    }

    [JsonIgnore] public double Scaling => UseRslora ? LoraAlpha / Math.Sqrt(R) : LoraAlpha / R;

    /// <summary>PEFT's dataclass defaults where MedPeft's (MILE's) differ.</summary>
    protected internal override IEnumerable<(string Field, JsonNode? Value)> PeftDefaults => [("lora_alpha", 8), ("lora_dropout", 0.0)];

    protected internal override void ValidateFile(string source)
    {
        base.ValidateFile(source);
        if (FanInFanOut) throw PeftConfigJson.Unsupported(source, "fan_in_fan_out", "true (Conv1D layers)");
        if (RankPattern.Count > 0) throw PeftConfigJson.Unsupported(source, "rank_pattern", "(per-module ranks)");
        if (AlphaPattern.Count > 0) throw PeftConfigJson.Unsupported(source, "alpha_pattern", "(per-module alphas)");
        if (PeftConfigJson.NonEmpty(LayersToTransform)) throw PeftConfigJson.Unsupported(source, "layers_to_transform", "(layer subsets)");
        if (PeftConfigJson.NonEmpty(LayerReplication)) throw PeftConfigJson.Unsupported(source, "layer_replication", "");
        if (Bias != "none") throw PeftConfigJson.Unsupported(source, "bias", $"\"{Bias}\"");
        Validate(source);
    }

    /// <summary>PEFT's check_target_module_exists (without layers_to_transform).</summary>
    public bool Targets(string moduleName) => Targets(moduleName, TargetModules, TargetRegex);

    public static bool Targets(string moduleName, IReadOnlyList<string> targetModules, string? targetRegex)
    {
        if (targetRegex is not null) return Regex.IsMatch(moduleName, "^(?:" + targetRegex + ")$", RegexOptions.CultureInvariant);
        return targetModules.Any(t => moduleName == t || moduleName.EndsWith("." + t, StringComparison.Ordinal));
    }

    public LoraConfig Validate(string source)
    {
        if (R <= 0) throw new MedPeftException($"{source}: LoRA r must be positive (got {R})");
        if (LoraDropout < 0 || LoraDropout >= 1) throw new MedPeftException($"{source}: lora_dropout must be in [0, 1) (got {LoraDropout})");
        if (Bias != "none") throw new MedPeftException($"{source}: LoRA bias \"{Bias}\" is not supported (only \"none\")");
        if (TargetRegex is null && TargetModules.Count == 0) throw new MedPeftException($"{source}: LoRA target_modules is empty");
        return this;
    }
}

/// <summary>A Linear wrapped by a PEFT layer (PEFT's BaseTunerLayer): the original module is its <c>base_layer</c>, so
/// the live parameter names are PEFT's (<c>q_proj.base_layer.weight</c>, <c>q_proj.lora_A.weight</c>).</summary>
public abstract class AdaptedLinear : nn.Module<Tensor, Tensor>
{
    public Linear base_layer;
    /// <summary>The module's name in the model the method was applied to (adapter keys are built from it).</summary>
    public string Name { get; }
    public bool Merged { get; protected set; }
    public Linear Base => base_layer;

    protected AdaptedLinear(string typeName, string name, Linear baseLayer) : base(typeName)
    {
        Name = name;
        base_layer = baseLayer;
        register_module("base_layer", baseLayer);
        RegisterComponents();   // now, so later fields (caches) are never picked up as buffers; children are registered explicitly
    }

    /// <summary>Folds the adapter into base_layer's weight (the forward then skips the adapter term).</summary>
    public abstract void Merge();
    /// <summary>Takes the adapter out of the weight again (exact up to rounding).</summary>
    public abstract void Unmerge();

    /// <summary>Every adapted Linear of a model (any method), in module order.</summary>
    public static List<T> In<T>(nn.Module model) where T : AdaptedLinear =>
        model.named_modules().Select(x => x.module).OfType<T>().ToList();

    /// <summary>Names of the modules inside wrappers (base_layer, lora_A, …): never targets of their own.</summary>
    static HashSet<string> InsideWrappers(nn.Module model)
    {
        var inside = new HashSet<string>();
        foreach (var (name, m) in model.named_modules())
            if (m is AdaptedLinear && !inside.Contains(name))
                foreach (var (child, _) in m.named_modules()) if (child.Length > 0) inside.Add(name + "." + child);
        return inside;
    }

    /// <summary>Names of the Linear modules a method could adapt: plain Linears and already wrapped ones, not the
    /// Linears inside a wrapper.</summary>
    public static List<string> AdaptableNames(nn.Module model)
    {
        var inside = InsideWrappers(model);
        return model.named_modules().Where(x => x.name.Length > 0 && x.module is Linear or AdaptedLinear && !inside.Contains(x.name))
            .Select(x => x.name).ToList();
    }

    /// <summary>Wraps each targeted Linear of <paramref name="model"/> with <paramref name="wrap"/> (already wrapped ones
    /// of this kind are returned as they are; other modules are refused with one line).</summary>
    internal static List<T> WrapTargets<T>(nn.Module model, Func<string, bool> targets, Func<string, Linear, T> wrap, string what,
        string targetText, string source) where T : AdaptedLinear
    {
        var inside = InsideWrappers(model);
        var matches = model.named_modules().Where(x => x.name.Length > 0 && !inside.Contains(x.name) && targets(x.name))
            .Select(x => (x.name, x.module)).ToList();
        if (matches.Count == 0) throw new MedPeftException($"{source}: target modules {targetText} not found in the model");
        var bad = matches.Where(t => t.module is not (Linear or T)).Select(t => $"{t.name} ({t.module.GetType().Name})").ToList();
        if (bad.Count > 0)
            throw new MedPeftException($"{source}: {what} supports nn.Linear targets only; not supported: {string.Join(", ", bad.Take(5))}{(bad.Count > 5 ? ", …" : "")}");
        var result = new List<T>();
        foreach (var (name, m) in matches)
        {
            if (m is T existing) { result.Add(existing); continue; }
            var wrapper = wrap(name, (Linear)m);
            wrapper.train(m.training);   // the mode of the model it joins (new modules start in training mode)
            ModuleSurgery.Replace(model, name, wrapper);
            result.Add(wrapper);
        }
        return result;
    }

    /// <summary>PEFT's merge_and_unload for these layers: merges, then puts each base Linear back in its wrapper's place,
    /// leaving a model whose state_dict has exactly the base names.</summary>
    internal static void MergeAndUnload<T>(nn.Module model) where T : AdaptedLinear
    {
        foreach (var (name, m) in model.named_modules().Where(x => x.module is T).ToList())
        {
            var layer = (T)m;
            layer.Merge();
            ModuleSurgery.Replace(model, name, layer.base_layer);
            layer.DisposeAdapter();
        }
    }

    /// <summary>Frees the adapter's own tensors (the base layer lives on in the model).</summary>
    protected abstract void DisposeAdapter();
}

/// <summary>PEFT's lora.Linear: <c>y = base_layer(x) + s · lora_B(lora_A(dropout(x)))</c>, the factors in fp32 whatever
/// the base dtype (the result is cast back to the base output's dtype), A kaiming-uniform(a = √5), B zeros. Merge adds
/// ΔW = s·B·A to the base weight; the forward then is the base layer alone.</summary>
public class LoraLinear : AdaptedLinear
{
    public Linear lora_A;
    public Linear lora_B;
    public double Scaling { get; }
    public double Dropout { get; }
    public Linear A => lora_A;
    public Linear B => lora_B;

    public LoraLinear(string name, Linear baseLayer, LoraConfig config) : this(nameof(LoraLinear), name, baseLayer, config) { }

    protected LoraLinear(string typeName, string name, Linear baseLayer, LoraConfig config) : base(typeName, name, baseLayer)
    {
        var w = baseLayer.weight!;
        long outF = w.shape[0], inF = w.shape[1];
        lora_A = nn.Linear(inF, config.R, hasBias: false, device: w.device, dtype: ScalarType.Float32);
        lora_B = nn.Linear(config.R, outF, hasBias: false, device: w.device, dtype: ScalarType.Float32);
        using (torch.no_grad())
        {
            nn.init.kaiming_uniform_(lora_A.weight!, a: Math.Sqrt(5));
            nn.init.zeros_(lora_B.weight!);
        }
        register_module("lora_A", lora_A);
        register_module("lora_B", lora_B);
        Scaling = config.Scaling;
        Dropout = config.LoraDropout;
        SetTrainable(true);
    }

    public virtual void SetTrainable(bool on)
    {
        lora_A.weight!.requires_grad = on;
        lora_B.weight!.requires_grad = on;
    }

    /// <summary>PEFT's get_delta_weight: ΔW = scaling · B·A in fp32, shape [out, in].</summary>
    public Tensor DeltaWeight() => torch.matmul(lora_B.weight!, lora_A.weight!) * Scaling;

    protected Tensor DropoutOf(Tensor x)
    {
        var h = x.to(ScalarType.Float32);
        return Dropout > 0 && training ? nn.functional.dropout(h, Dropout, training: true) : h;
    }

    public override Tensor forward(Tensor x)
    {
        var y = base_layer.call(x);
        if (Merged) return y;
        using var scope = torch.NewDisposeScope();
        var delta = lora_B.call(lora_A.call(DropoutOf(x))) * Scaling;
        return (y + delta).to(y.dtype).MoveToOuterDisposeScope();
    }

    /// <summary>The base weight with the adapter folded in (a new tensor; the layer is unchanged).</summary>
    public virtual Tensor MergedWeight()
    {
        using var _ = torch.no_grad();
        var w = base_layer.weight!;
        return w + DeltaWeight().to(w.dtype);
    }

    public override void Merge()
    {
        if (Merged) return;
        using var _ = torch.no_grad();
        var w = base_layer.weight!;
        w.add_(DeltaWeight().to(w.dtype));
        Merged = true;
    }

    public override void Unmerge()
    {
        if (!Merged) return;
        using var _ = torch.no_grad();
        var w = base_layer.weight!;
        w.sub_(DeltaWeight().to(w.dtype));
        Merged = false;
    }

    /// <summary>The adapter tensors by PEFT key (<c>base_model.model.&lt;module&gt;.lora_A.weight</c>, …).</summary>
    public virtual IEnumerable<(string Key, Tensor Tensor)> AdapterTensors()
    {
        yield return (PeftAdapters.Prefix + Name + ".lora_A.weight", lora_A.weight!);
        yield return (PeftAdapters.Prefix + Name + ".lora_B.weight", lora_B.weight!);
    }

    protected override void DisposeAdapter() { lora_A.Dispose(); lora_B.Dispose(); }
}

/// <summary>LoRA (Hu et al. 2021) as PEFT 0.11 implements it for nn.Linear: each targeted Linear is replaced by a
/// <see cref="LoraLinear"/> wrapping it (PEFT's lora.Linear), so the model code calls the wrapper wherever it called
/// the Linear. The base weights are never touched unless merged.</summary>
public static class Lora
{
    /// <summary>The LoRA-adapted Linear layers of a model (DoRA's too), in module order.</summary>
    public static List<LoraLinear> LayersOf(nn.Module model) => AdaptedLinear.In<LoraLinear>(model);

    /// <summary>Wraps every targeted nn.Linear (optionally only those whose name passes <paramref name="within"/>) with
    /// LoRA (<see cref="LoraConfig.UseDora"/>: DoRA); the new tensors train, nothing else changes. Already adapted layers
    /// are left as they are (their tensors set trainable). Throws when nothing matches or a match is not an nn.Linear.</summary>
    public static List<LoraLinear> Apply(nn.Module model, LoraConfig config, Func<string, bool>? within = null, string source = "LoRA")
    {
        config.Validate(source);
        var what = config.UseDora ? "DoRA" : "LoRA";
        var layers = AdaptedLinear.WrapTargets<LoraLinear>(model, n => (within is null || within(n)) && config.Targets(n),
            (name, linear) => config.UseDora ? new DoraLinear(name, linear, config) : new LoraLinear(name, linear, config), what,
            config.TargetRegex is not null ? $"\"{config.TargetRegex}\"" : "[" + string.Join(", ", config.TargetModules) + "]", source);
        var mixed = layers.FirstOrDefault(l => (l is DoraLinear) != config.UseDora);
        if (mixed is not null) throw new MedPeftException($"{source}: {mixed.Name} is already adapted by {(mixed is DoraLinear ? "DoRA" : "LoRA")}; one of LoRA and DoRA per layer");
        foreach (var l in layers) l.SetTrainable(true);
        return layers;
    }

    /// <summary>W += ΔW in every adapted layer (the forward then adds nothing). Idempotent per layer.</summary>
    public static void Merge(nn.Module model) { foreach (var l in LayersOf(model)) l.Merge(); }

    /// <summary>W −= ΔW in every merged layer (exact up to fp32 rounding).</summary>
    public static void Unmerge(nn.Module model) { foreach (var l in LayersOf(model)) l.Unmerge(); }

    /// <summary>PEFT's merge_and_unload: merges, then unwraps every adapted layer, leaving a plain model whose
    /// state_dict has exactly the base names.</summary>
    public static void MergeAndUnload(nn.Module model) => AdaptedLinear.MergeAndUnload<LoraLinear>(model);

    /// <summary>The LoRA tensors by PEFT key (<c>base_model.model.&lt;module&gt;.lora_A.weight</c> / <c>lora_B.weight</c>;
    /// DoRA adds <c>lora_magnitude_vector</c>).</summary>
    public static Dictionary<string, Tensor> AdapterTensors(nn.Module model) =>
        LayersOf(model).SelectMany(l => l.AdapterTensors()).ToDictionary(x => x.Key, x => x.Tensor);

    /// <summary>The state dict of the merged model under the base names (merges a copy of each weight; the model itself
    /// is left as it was): what a "merged export" writes.</summary>
    public static List<(string Name, Tensor Tensor)> MergedStateDict(nn.Module model)
    {
        var layers = LayersOf(model).ToDictionary(l => l.Name);
        var list = new List<(string, Tensor)>();
        using var _ = torch.no_grad();
        foreach (var (name, t) in model.state_dict())
        {
            var at = name.IndexOf(".base_layer.", StringComparison.Ordinal);
            if (at < 0)
            {
                if (!layers.Keys.Any(l => name.StartsWith(l + ".", StringComparison.Ordinal))) list.Add((name, t));
                continue;   // a wrapper's own tensors (lora_A, …) are not part of the merged model
            }
            var module = name[..at];
            var baseName = module + name[(at + ".base_layer".Length)..];
            var l = layers[module];
            if (!l.Merged && name.EndsWith(".base_layer.weight", StringComparison.Ordinal)) list.Add((baseName, l.MergedWeight()));
            else list.Add((baseName, t));
        }
        return list;
    }

    /// <summary>Writes the merged model (base names only) as safetensors.</summary>
    public static void SaveMerged(nn.Module model, string path) => Checkpoint.SaveSafetensors(MergedStateDict(model), path);

    /// <summary>The LoRA config to save: <paramref name="config"/> with targets that select exactly the adapted modules
    /// (see <see cref="TowerScope.ScopedTargetRegex"/>).</summary>
    public static LoraConfig ScopedConfig(nn.Module model, LoraConfig config, TowerLayout layout, IEnumerable<string> towers)
    {
        var adapted = LayersOf(model).Select(l => l.Name).ToHashSet();
        var regex = TowerScope.ScopedTargetRegex(AdaptedLinear.AdaptableNames(model), adapted,
            r => r is null ? config.Targets : n => LoraConfig.Targets(n, [], r), config.TargetModules, layout, towers);
        return regex is null ? config : config with { TargetRegex = regex };
    }
}

/// <summary>LoRA as a tuning method ("lora", "lora@llm", …): wraps the targeted Linear layers inside the chosen towers.
/// Defaults as in MILE: r 8, alpha 32, dropout 0.1, targets query/value (BLIP's BERT attention) or q_proj/v_proj
/// (LLaMA, and CLIP when the vision tower is chosen). Saved as PEFT's LORA; merges into the weights.</summary>
public class LoraMethod(LoraConfig? config = null) : ITuningMethod
{
    public LoraConfig? Config { get; } = config;
    public virtual string Name => "lora";
    public virtual string Description => "LoRA low-rank adapters on attention query/value projections (r 8, alpha 32)";
    public string? PeftType => "LORA";
    public Type? ConfigType => typeof(LoraConfig);
    public bool CanMerge => true;
    /// <summary>LoRA's is swept (Experiments.StrategyDefaults).</summary>
    public virtual double? DefaultLearningRate => null;
    /// <summary>DoRA is LoRA with use_dora (one PEFT type, two methods).</summary>
    protected virtual bool UseDora => false;

    public static LoraConfig DefaultFor(TowerLayout layout) =>
        ReferenceEquals(layout, TowerLayout.Blip) ? new LoraConfig { TargetModules = ["query", "value"] }
        : ReferenceEquals(layout, TowerLayout.Llava) ? new LoraConfig { TargetModules = ["q_proj", "v_proj"] }
        : new LoraConfig { TargetModules = ["q_proj", "v_proj", "query", "value"] };

    static readonly MethodOption[] LoraOptions =
    [
        new("r", MethodOptionKind.Integer, "rank"), new("alpha", MethodOptionKind.Number, "lora_alpha"), new("dropout", MethodOptionKind.Number, "lora_dropout"),
        new("targets", MethodOptionKind.List, "target_modules suffixes"), new("rslora", MethodOptionKind.Boolean, "use_rslora"),
    ];

    public IReadOnlyList<MethodOption> Options => LoraOptions;

    public PeftConfig WithOption(PeftConfig? config, string key, string value, string where)
    {
        var c = config as LoraConfig ?? new LoraConfig { TargetModules = [] };   // empty targets: the family's defaults
        return key switch
        {
            "r" => c with { R = OptionValues.Int(value, where) }, "alpha" => c with { LoraAlpha = OptionValues.Num(value, where) },
            "dropout" => c with { LoraDropout = OptionValues.Num(value, where) }, "targets" => c with { TargetModules = OptionValues.List(value) },
            _ => c with { UseRslora = OptionValues.Bool(value, where) },
        };
    }

    public ITuningMethod Configure(PeftConfig config, TowerLayout? layout, Func<string, int[]>? encode, string context)
    {
        var c = (LoraConfig)config;
        bool familyTargets = c.TargetModules.Count == 0 && c.TargetRegex is null;
        if (layout is null) { (familyTargets ? c with { TargetModules = ["(family default)"] } : c).Validate(context); return this; }
        return With(familyTargets ? c with { TargetModules = DefaultFor(layout).TargetModules } : c);
    }

    LoraConfig ConfigFor(TowerLayout layout) => (Config ?? DefaultFor(layout)) with { UseDora = UseDora };

    public void Apply(nn.Module model, TowerLayout layout, IReadOnlyList<string> towers) =>
        Lora.Apply(model, ConfigFor(layout), TowerScope.Within(layout, towers), $"{Name}@{string.Join(",", towers)}");

    public void SaveAdapter(nn.Module model, TowerLayout layout, IReadOnlyList<string> towers, string dir, string? taskType) =>
        PeftAdapters.SaveLora(model, dir, Lora.ScopedConfig(model, ConfigFor(layout), layout, towers), taskType);

    public bool Reads(PeftAdapterConfig config) => config.Lora is { } l && l.UseDora == UseDora;

    public ITuningMethod Load(nn.Module model, PeftAdapterConfig config, IReadOnlyDictionary<string, Tensor> state, string source, bool trainable)
    {
        Lora.Apply(model, config.Lora!, source: Path.Combine(source, PeftAdapters.ConfigFile));
        PeftAdapters.CopyInto(Lora.AdapterTensors(model), state, source);
        foreach (var l in Lora.LayersOf(model)) l.SetTrainable(trainable);
        return With(config.Lora!);
    }

    /// <summary>This method with other settings (DoRA stays DoRA).</summary>
    protected virtual LoraMethod With(LoraConfig config) => new(config);

    public void Finalize(nn.Module model, FinalizeMode mode)
    {
        if (mode != FinalizeMode.KeepAdapter) Lora.MergeAndUnload(model);
    }
}
