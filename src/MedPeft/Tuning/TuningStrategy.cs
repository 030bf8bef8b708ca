using TorchSharp;
using static TorchSharp.torch;
using MedPeft.Models;

namespace MedPeft.Tuning;

/// <summary>One term of a strategy: a method and the towers it applies to.</summary>
public sealed record StrategyTerm(ITuningMethod Method, IReadOnlyList<string> Towers);

/// <summary>A parsed strategy such as <c>ln</c>, <c>ln@text</c>, <c>full@vision+ln@text</c> or
/// <c>ffn@vision,text_encoder</c>: terms joined by '+', each <c>method[@tower[,tower…]]</c>; no towers = all.</summary>
public sealed class TuningStrategy
{
    public string Spec { get; }
    public IReadOnlyList<StrategyTerm> Terms { get; }
    public TowerLayout Layout { get; }

    TuningStrategy(string spec, IReadOnlyList<StrategyTerm> terms, TowerLayout layout) { Spec = spec; Terms = terms; Layout = layout; }

    /// <param name="methods">Method instances that replace the registry's by name, e.g. a LoraMethod built from
    /// --lora-r / --lora-alpha options.</param>
    public static TuningStrategy Parse(string spec, TowerLayout layout, IReadOnlyDictionary<string, ITuningMethod>? methods = null)
    {
        var context = $"--strategy \"{spec}\"";
        if (string.IsNullOrWhiteSpace(spec)) throw new MedPeftException($"{context}: empty strategy");
        var terms = new List<StrategyTerm>();
        foreach (var raw in spec.Split('+'))
        {
            var part = raw.Trim();
            var at = part.IndexOf('@');
            var name = at < 0 ? part : part[..at];
            var method = methods is not null && methods.TryGetValue(name, out var custom) ? custom : TuningMethods.Get(name, context);
            var towers = layout.Resolve(at < 0 ? null : part[(at + 1)..].Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries), context);
            terms.Add(new StrategyTerm(method, towers));
        }
        return new TuningStrategy(spec, terms, layout);
    }

    /// <summary>Freezes the whole model, then lets every term mark what it trains.</summary>
    public TrainableReport Apply(nn.Module model)
    {
        foreach (var (_, p) in model.named_parameters()) p.requires_grad = false;
        foreach (var term in Terms) term.Method.Apply(model, Layout, term.Towers);
        return TrainableReport.Of(model, Layout);
    }

    IReadOnlyList<ITuningMethod> Methods => Terms.Select(t => t.Method).Distinct().ToList();

    /// <summary>The PEFT type the strategy saves as: its methods' common type; null for full fine-tuning and for
    /// strategies mixing methods of different types (PEFT has one type per adapter).</summary>
    public string? PeftType => Methods.Select(m => m.PeftType).Distinct().ToList() is [var one] ? one : null;

    /// <summary>Writes what the strategy trained as a PEFT adapter folder (through its method); returns the PEFT type
    /// written, or null when the strategy has no adapter form (nothing is written).</summary>
    public string? SaveAdapter(nn.Module model, string dir, string? taskType = null)
    {
        if (PeftType is not { } type) return null;
        Methods[0].SaveAdapter(model, Layout, Terms.SelectMany(t => t.Towers).Distinct().ToList(), dir, taskType);
        return type;
    }

    /// <summary>Ends every method of the strategy on the model (see <see cref="FinalizeMode"/>). With
    /// <see cref="FinalizeMode.MergeOrRemove"/> a method that cannot merge is removed only when the strategy has an
    /// adapter form to keep it in; a mixed strategy (no adapter) with such a method is refused.</summary>
    public void Finalize(nn.Module model, FinalizeMode mode)
    {
        if (mode == FinalizeMode.MergeOrRemove && PeftType is null && Methods.FirstOrDefault(m => !m.CanMerge) is { } lost)
            throw new MedPeftException($"--strategy \"{Spec}\": {lost.Name} has no merged form and a strategy mixing method types has no PEFT adapter to keep it in; train it alone");
        foreach (var m in Methods) m.Finalize(model, mode);
    }
}
