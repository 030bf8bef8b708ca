using System.Runtime.CompilerServices;
using System.Text.RegularExpressions;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MedPeft.Tuning;

/// <summary>(IA)³ settings with PEFT 0.11's meaning. <see cref="TargetModules"/> match module names as LoRA's do (exact
/// or suffix after a dot; <see cref="TargetRegex"/> = full-match regex). A targeted module is a feed-forward module
/// when its name ends with one of <see cref="FeedforwardModules"/> (PEFT's plain <c>endswith</c>), or full-matches
/// <see cref="FeedforwardRegex"/>: its vector scales the layer's input, otherwise the layer's output.</summary>
public sealed record Ia3Config
{
    public IReadOnlyList<string> TargetModules { get; init; } = ["k_proj", "v_proj", "down_proj"];
    public string? TargetRegex { get; init; }
    public IReadOnlyList<string> FeedforwardModules { get; init; } = ["down_proj"];
    public string? FeedforwardRegex { get; init; }
    public bool InitIa3Weights { get; init; } = true;

    /// <summary>PEFT's TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING / _FEEDFORWARD_MODULES_MAPPING for "llama".</summary>
    public static readonly Ia3Config Llama = new();
    /// <summary>The same mappings for "bert" (BLIP's text towers are BERTs); MILE's IA3 setting on MISS (paper-facts.md).
    /// "output.dense" is a suffix, so it also selects the attention output projections (self and cross), as in PEFT.</summary>
    public static readonly Ia3Config Bert = new() { TargetModules = ["key", "value", "output.dense"], FeedforwardModules = ["output.dense"] };

    public bool Targets(string moduleName) => new LoraConfig { TargetModules = TargetModules, TargetRegex = TargetRegex }.Targets(moduleName);

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

/// <summary>One (IA)³-adapted Linear: its vector <c>ia3_l</c> (registered on the Linear, fp32, 1-D: [in] for a
/// feed-forward module, [out] otherwise — PEFT stores [1, in] / [out, 1]; the adapter file uses PEFT's shapes, and the
/// 1-D form keeps the vector out of weight decay, which would pull it towards 0 instead of its identity value 1).</summary>
public sealed class Ia3Layer
{
    public required string Name { get; init; }
    public required Linear Base { get; init; }
    public required Parameter Vector { get; init; }
    public required bool IsFeedforward { get; init; }
    public bool Merged { get; internal set; }
    public long Calls { get; internal set; }
    internal List<Action> Remove { get; } = [];

    /// <summary>The vector in PEFT's stored shape: [1, in] (feed-forward) or [out, 1].</summary>
    public Tensor PeftShaped() => IsFeedforward ? Vector.view(1, -1) : Vector.view(-1, 1);
}

/// <summary>(IA)³ (Liu et al. 2022, "Few-Shot Parameter-Efficient Fine-Tuning is Better and Cheaper than In-Context
/// Learning") as PEFT 0.11 implements it for nn.Linear: a learned vector, initialised to ones, multiplies the output of
/// the targeted layer (keys, values) or — for feed-forward modules — its input: <c>y = W(x ⊙ l) + b</c>. Computed in
/// the vector's dtype (fp32) and cast back, as PEFT. Added through forward (pre-)hooks on the Linear, so the model must
/// call its projections with <c>.call(x)</c>. Merge multiplies the weight's rows (and the bias) or its columns.</summary>
public static class Ia3
{
    static readonly ConditionalWeakTable<nn.Module, Ia3Layer> Layers = new();

    public static List<Ia3Layer> LayersOf(nn.Module model)
    {
        var list = new List<Ia3Layer>();
        foreach (var (_, m) in model.named_modules())
            if (Layers.TryGetValue(m, out var layer)) list.Add(layer);
        return list;
    }

    /// <summary>Adds (IA)³ vectors to every targeted nn.Linear passing <paramref name="within"/>. Throws when nothing
    /// matches or a match is not an nn.Linear.</summary>
    public static List<Ia3Layer> Apply(nn.Module model, Ia3Config config, Func<string, bool>? within = null, string source = "IA3")
    {
        config.Validate(source);
        var targets = model.named_modules()
            .Where(x => x.name.Length > 0 && (within is null || within(x.name)) && config.Targets(x.name))
            .Select(x => (x.name, x.module)).ToList();
        if (targets.Count == 0)
            throw new MedPeftException($"{source}: IA3 target modules {(config.TargetRegex is not null ? $"\"{config.TargetRegex}\"" : "[" + string.Join(", ", config.TargetModules) + "]")} not found in the model");
        var bad = targets.Where(t => t.module is not Linear).Select(t => $"{t.name} ({t.module.GetType().Name})").ToList();
        if (bad.Count > 0)
            throw new MedPeftException($"{source}: IA3 supports nn.Linear targets only; not supported: {string.Join(", ", bad.Take(5))}{(bad.Count > 5 ? ", …" : "")}");
        var result = new List<Ia3Layer>();
        foreach (var (name, m) in targets)
        {
            if (Layers.TryGetValue(m, out var existing)) { existing.Vector.requires_grad = true; result.Add(existing); continue; }
            result.Add(Attach(name, (Linear)m, config));
        }
        return result;
    }

    static Ia3Layer Attach(string name, Linear linear, Ia3Config config)
    {
        var w = linear.weight!;
        bool ff = config.IsFeedforward(name);
        long size = ff ? w.shape[1] : w.shape[0];
        var vector = new Parameter(config.InitIa3Weights
            ? torch.ones(size, dtype: ScalarType.Float32, device: w.device)
            : torch.randn(size, dtype: ScalarType.Float32, device: w.device), requires_grad: true);
        linear.register_parameter("ia3_l", vector);
        var layer = new Ia3Layer { Name = name, Base = linear, Vector = vector, IsFeedforward = ff };
        if (ff)
        {
            var h = linear.register_forward_pre_hook((m, x) =>
            {
                layer.Calls++;
                if (layer.Merged) return x;
                return (x.to(ScalarType.Float32) * layer.Vector).to(x.dtype);
            });
            layer.Remove.Add(() => h.remove());
        }
        else
        {
            var h = linear.register_forward_hook((m, x, y) =>
            {
                layer.Calls++;
                if (layer.Merged) return y;
                return (y.to(ScalarType.Float32) * layer.Vector).to(y.dtype);
            });
            layer.Remove.Add(() => h.remove());
        }
        Layers.Add(linear, layer);
        return layer;
    }

    /// <summary>Folds the vectors into the weights: W·diag(l) for feed-forward modules, diag(l)·W and b⊙l otherwise.</summary>
    public static void Merge(nn.Module model)
    {
        using var _ = torch.no_grad();
        foreach (var l in LayersOf(model))
        {
            if (l.Merged) continue;
            var w = l.Base.weight!;
            w.copy_((w.to(ScalarType.Float32) * l.PeftShaped()).to(w.dtype));
            if (!l.IsFeedforward && l.Base.bias is { } b) b.copy_((b.to(ScalarType.Float32) * l.Vector).to(b.dtype));
            l.Merged = true;
        }
    }

    /// <summary>Divides the vectors out again (PEFT adds 1e-8 to avoid division by zero; inexact by rounding).</summary>
    public static void Unmerge(nn.Module model)
    {
        using var _ = torch.no_grad();
        foreach (var l in LayersOf(model))
        {
            if (!l.Merged) continue;
            var w = l.Base.weight!;
            w.copy_((w.to(ScalarType.Float32) / (l.PeftShaped() + 1e-8)).to(w.dtype));
            if (!l.IsFeedforward && l.Base.bias is { } b) b.copy_((b.to(ScalarType.Float32) / (l.Vector + 1e-8)).to(b.dtype));
            l.Merged = false;
        }
    }

    /// <summary>Merges, then removes hooks and vectors: a plain model with the base parameter names only.</summary>
    public static void MergeAndUnload(nn.Module model)
    {
        Merge(model);
        foreach (var l in LayersOf(model))
        {
            foreach (var r in l.Remove) r();
            ModuleSurgery.RemoveParameter(l.Base, "ia3_l");
            Layers.Remove(l.Base);
        }
    }

    /// <summary>The config to save so that PEFT, which matches target_modules over the whole model, adapts exactly the
    /// modules adapted here (a tower-scoped "ia3@llm" would otherwise also hit CLIP's k_proj/v_proj): the config itself
    /// when it already does, else a full-match regex limited to the towers' prefixes, else the exact module names.</summary>
    public static Ia3Config ScopedConfig(nn.Module model, Ia3Config config, TowerLayout layout, IEnumerable<string> towers)
    {
        var adapted = LayersOf(model).Select(l => l.Name).ToHashSet();
        var linears = model.named_modules().Where(x => x.name.Length > 0 && x.module is Linear).Select(x => x.name).ToList();
        bool Exact(Ia3Config c) => linears.Where(c.Targets).ToHashSet().SetEquals(adapted);
        if (Exact(config)) return config;
        var prefixes = towers.Distinct().Select(t => Regex.Escape(layout.Towers[t]));
        var scoped = config with { TargetRegex = $"(?:{string.Join("|", prefixes)}).*\\.(?:{string.Join("|", config.TargetModules.Select(Regex.Escape))})" };
        if (Exact(scoped)) return scoped;
        return config with { TargetRegex = string.Join("|", adapted.Order(StringComparer.Ordinal).Select(Regex.Escape)) };
    }

    /// <summary>The vectors by PEFT key (<c>base_model.model.&lt;module&gt;.ia3_l</c>) in PEFT's shapes (views).</summary>
    public static Dictionary<string, Tensor> AdapterTensors(nn.Module model) =>
        LayersOf(model).ToDictionary(l => PeftAdapters.Prefix + l.Name + ".ia3_l", l => l.PeftShaped());
}

/// <summary>IA3 as a tuning method ("ia3", "ia3@llm", "ia3@text_decoder", …): vectors on the targeted Linear layers
/// inside the chosen towers. Defaults are PEFT's per model type — LLaMA k_proj, v_proj, down_proj (feed-forward:
/// down_proj); BERT-like BLIP text towers key, value, output.dense (feed-forward: output.dense), which is also MILE's
/// setting on MISS (paper-facts.md).</summary>
public sealed class Ia3Method(Ia3Config? config = null) : ITuningMethod
{
    public Ia3Config? Config { get; } = config;
    public string Name => "ia3";
    public string Description => "(IA)³ scaling vectors on keys, values and feed-forward inputs";

    public static Ia3Config DefaultFor(TowerLayout layout) =>
        ReferenceEquals(layout, TowerLayout.Blip) ? Ia3Config.Bert : Ia3Config.Llama;

    public void Apply(nn.Module model, TowerLayout layout, IReadOnlyList<string> towers)
    {
        var config = Config ?? DefaultFor(layout);
        Ia3.Apply(model, config, TowerScope.Within(layout, towers), $"ia3@{string.Join(",", towers)}");
    }
}
