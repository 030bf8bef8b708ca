using System.Runtime.CompilerServices;
using System.Text.RegularExpressions;
using MedPeft.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MedPeft.Tuning;

/// <summary>LoRA settings with PEFT's (0.11) meaning. <see cref="TargetModules"/> matches module names by suffix
/// (<c>name == t</c> or <c>name.EndsWith("." + t)</c>); <see cref="TargetRegex"/>, when set, replaces it with a
/// full-match regex over the whole module name (PEFT's string form of target_modules). Scaling is
/// <c>lora_alpha / r</c>, or <c>lora_alpha / √r</c> with <see cref="UseRslora"/>. Only bias "none" is supported.</summary>
public sealed record LoraConfig
{
    public int R { get; init; } = 8;
    public double LoraAlpha { get; init; } = 32;
    public double LoraDropout { get; init; } = 0.1;
    public IReadOnlyList<string> TargetModules { get; init; } = ["q_proj", "v_proj"];
    public string? TargetRegex { get; init; }
    public bool UseRslora { get; init; }
    public string Bias { get; init; } = "none";

    public double Scaling => UseRslora ? LoraAlpha / Math.Sqrt(R) : LoraAlpha / R;

    /// <summary>PEFT's check_target_module_exists (without layers_to_transform).</summary>
    public bool Targets(string moduleName)
    {
        if (TargetRegex is not null) return Regex.IsMatch(moduleName, "^(?:" + TargetRegex + ")$", RegexOptions.CultureInvariant);
        return TargetModules.Any(t => moduleName == t || moduleName.EndsWith("." + t, StringComparison.Ordinal));
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

/// <summary>The LoRA state of one adapted nn.Linear: its low-rank factors (registered on the Linear itself as
/// children <c>lora_A</c> [r, in] and <c>lora_B</c> [out, r], so parameter names are PEFT's
/// <c>&lt;module&gt;.lora_A.weight</c> / <c>.lora_B.weight</c>), scaling, dropout and whether ΔW is merged into W.</summary>
public sealed class LoraLayer
{
    public required string Name { get; init; }
    public required Linear Base { get; init; }
    public required Linear A { get; init; }
    public required Linear B { get; init; }
    public required double Scaling { get; init; }
    public required double Dropout { get; init; }
    public bool Merged { get; internal set; }
    /// <summary>How often the forward hook ran (a model that calls Linear.forward directly never runs it).</summary>
    public long Calls { get; internal set; }
    internal Action? RemoveHook { get; set; }

    /// <summary>ΔW = scaling · B·A in fp32, shape [out, in].</summary>
    public Tensor DeltaWeight() => torch.matmul(B.weight!, A.weight!) * Scaling;
}

/// <summary>LoRA (Hu et al. 2021) as PEFT 0.11 implements it for nn.Linear: <c>y = W x + b + s · B(A(dropout(x)))</c>,
/// A kaiming-uniform(a = √5), B zeros, factors in fp32 whatever the base dtype (the base output is cast back to its
/// dtype). The base weights are never touched unless merged. The extra term is added by a forward hook on the
/// targeted Linear, so the model code must invoke its projections through <c>Module.call(x)</c> (which runs hooks),
/// not <c>forward(x)</c>.</summary>
public static class Lora
{
    static readonly ConditionalWeakTable<nn.Module, LoraLayer> Layers = new();

    /// <summary>The adapted Linear layers of a model, by module name (relative to <paramref name="model"/>).</summary>
    public static List<LoraLayer> LayersOf(nn.Module model)
    {
        var list = new List<LoraLayer>();
        foreach (var (name, m) in model.named_modules())
            if (Layers.TryGetValue(m, out var layer)) list.Add(layer);
        return list;
    }

    /// <summary>Names of the modules the config targets (PEFT's matching), optionally within a name filter.</summary>
    public static List<(string Name, nn.Module Module)> TargetedModules(nn.Module model, LoraConfig config, Func<string, bool>? within = null)
    {
        var list = new List<(string, nn.Module)>();
        foreach (var (name, m) in model.named_modules())
        {
            if (name.Length == 0 || (within is not null && !within(name))) continue;
            if (name.EndsWith(".lora_A", StringComparison.Ordinal) || name.EndsWith(".lora_B", StringComparison.Ordinal)) continue;
            if (config.Targets(name)) list.Add((name, m));
        }
        return list;
    }

    /// <summary>Adds LoRA to every targeted nn.Linear (optionally only those whose name passes <paramref name="within"/>);
    /// the new factors train, nothing else changes. Already adapted layers are left as they are (factors set trainable).
    /// Throws when nothing matches or a match is not an nn.Linear.</summary>
    public static List<LoraLayer> Apply(nn.Module model, LoraConfig config, Func<string, bool>? within = null, string source = "LoRA")
    {
        config.Validate(source);
        var targets = TargetedModules(model, config, within);
        if (targets.Count == 0)
            throw new MedPeftException($"{source}: target modules {(config.TargetRegex is not null ? $"\"{config.TargetRegex}\"" : "[" + string.Join(", ", config.TargetModules) + "]")} not found in the model");
        var bad = targets.Where(t => t.Module is not Linear).Select(t => $"{t.Name} ({t.Module.GetType().Name})").ToList();
        if (bad.Count > 0)
            throw new MedPeftException($"{source}: LoRA supports nn.Linear targets only; not supported: {string.Join(", ", bad.Take(5))}{(bad.Count > 5 ? ", …" : "")}");
        var result = new List<LoraLayer>();
        foreach (var (name, m) in targets)
        {
            if (Layers.TryGetValue(m, out var existing))
            {
                existing.A.weight!.requires_grad = true;
                existing.B.weight!.requires_grad = true;
                result.Add(existing);
                continue;
            }
            result.Add(Attach(name, (Linear)m, config));
        }
        return result;
    }

    static LoraLayer Attach(string name, Linear linear, LoraConfig config)
    {
        var w = linear.weight!;
        long outF = w.shape[0], inF = w.shape[1];
        var dev = w.device;
        var a = nn.Linear(inF, config.R, hasBias: false, device: dev, dtype: ScalarType.Float32);
        var b = nn.Linear(config.R, outF, hasBias: false, device: dev, dtype: ScalarType.Float32);
        using (torch.no_grad())
        {
            nn.init.kaiming_uniform_(a.weight!, a: Math.Sqrt(5));
            nn.init.zeros_(b.weight!);
        }
        a.weight!.requires_grad = true;
        b.weight!.requires_grad = true;
        linear.register_module("lora_A", a);
        linear.register_module("lora_B", b);
        var layer = new LoraLayer { Name = name, Base = linear, A = a, B = b, Scaling = config.Scaling, Dropout = config.LoraDropout };
        var remover = linear.register_forward_hook((m, x, y) =>
        {
            layer.Calls++;
            if (layer.Merged) return y;
            var h = x.to(ScalarType.Float32);
            if (layer.Dropout > 0 && m.training) h = nn.functional.dropout(h, layer.Dropout, training: true);
            var delta = layer.B.forward(layer.A.forward(h)) * layer.Scaling;
            return (y + delta).to(y.dtype);
        });
        layer.RemoveHook = () => remover.remove();
        Layers.Add(linear, layer);
        return layer;
    }

    /// <summary>W += s·B·A in every adapted layer (the hook then adds nothing). Idempotent per layer.</summary>
    public static void Merge(nn.Module model)
    {
        using var _ = torch.no_grad();
        foreach (var l in LayersOf(model))
        {
            if (l.Merged) continue;
            var w = l.Base.weight!;
            w.add_(l.DeltaWeight().to(w.dtype));
            l.Merged = true;
        }
    }

    /// <summary>W −= s·B·A in every merged layer (exact up to fp32 rounding).</summary>
    public static void Unmerge(nn.Module model)
    {
        using var _ = torch.no_grad();
        foreach (var l in LayersOf(model))
        {
            if (!l.Merged) continue;
            var w = l.Base.weight!;
            w.sub_(l.DeltaWeight().to(w.dtype));
            l.Merged = false;
        }
    }

    /// <summary>PEFT's merge_and_unload: merges, then removes the hooks and the lora_A/lora_B children, leaving a plain
    /// model whose state_dict has exactly the base names.</summary>
    public static void MergeAndUnload(nn.Module model)
    {
        Merge(model);
        Unload(model);
    }

    /// <summary>Removes LoRA without merging (PEFT's unload): merged layers keep their merged weights.</summary>
    public static void Unload(nn.Module model)
    {
        foreach (var l in LayersOf(model))
        {
            l.RemoveHook?.Invoke();
            l.RemoveHook = null;
            RemoveChild(l.Base, "lora_A");
            RemoveChild(l.Base, "lora_B");
            Layers.Remove(l.Base);
            l.A.Dispose();
            l.B.Dispose();
        }
    }

    static readonly System.Reflection.FieldInfo? SubmodulesField =
        typeof(nn.Module).GetField("_internal_submodules", System.Reflection.BindingFlags.Instance | System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Public);

    static void RemoveChild(nn.Module parent, string name)
    {
        if (SubmodulesField?.GetValue(parent) is TorchSharp.Utils.OrderedDict<string, nn.Module> dict) dict.Remove(name);
        else throw new MedPeftException("LoRA unload: this TorchSharp version does not expose a module's children for removal");
    }

    /// <summary>The LoRA tensors by PEFT key (<c>base_model.model.&lt;module&gt;.lora_A.weight</c> / <c>lora_B.weight</c>).</summary>
    public static Dictionary<string, Tensor> AdapterTensors(nn.Module model)
    {
        var d = new Dictionary<string, Tensor>();
        foreach (var l in LayersOf(model))
        {
            d[PeftAdapters.Prefix + l.Name + ".lora_A.weight"] = l.A.weight!;
            d[PeftAdapters.Prefix + l.Name + ".lora_B.weight"] = l.B.weight!;
        }
        return d;
    }

    /// <summary>The state dict of the merged model without LoRA names (merges a copy of each weight; the model itself
    /// is left as it was): what a "merged export" writes.</summary>
    public static List<(string Name, Tensor Tensor)> MergedStateDict(nn.Module model)
    {
        var layers = LayersOf(model).ToDictionary(l => l.Name + ".weight");
        var list = new List<(string, Tensor)>();
        using var _ = torch.no_grad();
        foreach (var (name, t) in model.state_dict())
        {
            if (name.Contains(".lora_A.", StringComparison.Ordinal) || name.Contains(".lora_B.", StringComparison.Ordinal)) continue;
            if (layers.TryGetValue(name, out var l) && !l.Merged) list.Add((name, (t + l.DeltaWeight().to(t.dtype)).to(t.dtype)));
            else list.Add((name, t));
        }
        return list;
    }

    /// <summary>Writes the merged model (base names only) as safetensors.</summary>
    public static void SaveMerged(nn.Module model, string path) => Checkpoint.SaveSafetensors(MergedStateDict(model), path);
}

/// <summary>LoRA as a tuning method ("lora", "lora@llm", …): adds LoRA factors to the targeted Linear layers inside the
/// chosen towers. Defaults as in MILE: r 8, alpha 32, dropout 0.1, targets query/value (BLIP's BERT attention) or
/// q_proj/v_proj (LLaMA, and CLIP when the vision tower is chosen).</summary>
public sealed class LoraMethod(LoraConfig? config = null) : ITuningMethod
{
    public LoraConfig? Config { get; } = config;
    public string Name => "lora";
    public string Description => "LoRA low-rank adapters on attention query/value projections (r 8, alpha 32)";

    public static LoraConfig DefaultFor(TowerLayout layout) =>
        ReferenceEquals(layout, TowerLayout.Blip) ? new LoraConfig { TargetModules = ["query", "value"] }
        : ReferenceEquals(layout, TowerLayout.Llava) ? new LoraConfig { TargetModules = ["q_proj", "v_proj"] }
        : new LoraConfig { TargetModules = ["q_proj", "v_proj", "query", "value"] };

    public void Apply(nn.Module model, TowerLayout layout, IReadOnlyList<string> towers)
    {
        var config = Config ?? DefaultFor(layout);
        bool Within(string moduleName)
        {
            var tower = layout.TowerOf(moduleName + ".");
            return tower is not null && towers.Contains(tower);
        }
        Lora.Apply(model, config, Within, $"lora@{string.Join(",", towers)}");
    }
}
