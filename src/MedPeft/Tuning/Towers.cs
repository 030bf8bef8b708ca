namespace MedPeft.Tuning;

/// <summary>Which parameter-name prefixes make up each tower of a model family, plus aliases (BLIP's "text" = both
/// text towers). Strategies are scoped to towers by these prefixes.</summary>
public sealed class TowerLayout(IReadOnlyDictionary<string, string> towers, IReadOnlyDictionary<string, string[]> aliases)
{
    /// <summary>Tower name → parameter-name prefix, in display order.</summary>
    public IReadOnlyDictionary<string, string> Towers { get; } = towers;
    public IReadOnlyDictionary<string, string[]> Aliases { get; } = aliases;

    public static readonly TowerLayout Blip = new(
        new Dictionary<string, string> { ["vision"] = "vision_model.", ["text_encoder"] = "text_encoder.", ["text_decoder"] = "text_decoder." },
        new Dictionary<string, string[]> { ["text"] = ["text_encoder", "text_decoder"] });

    /// <summary>LLaVA (HF layout): CLIP vision tower, multi-modal projector, language model.</summary>
    public static readonly TowerLayout Llava = new(
        new Dictionary<string, string> { ["vision"] = "vision_tower.", ["projector"] = "multi_modal_projector.", ["llm"] = "language_model." },
        new Dictionary<string, string[]>());

    public string? TowerOf(string parameterName) =>
        Towers.FirstOrDefault(t => parameterName.StartsWith(t.Value, StringComparison.Ordinal)).Key;

    /// <summary>Expands tower names and aliases; null or empty means every tower.</summary>
    public IReadOnlyList<string> Resolve(IEnumerable<string>? names, string context)
    {
        var list = names?.ToList();
        if (list is null || list.Count == 0) return Towers.Keys.ToList();
        var result = new List<string>();
        foreach (var n in list)
        {
            if (Towers.ContainsKey(n)) result.Add(n);
            else if (Aliases.TryGetValue(n, out var expanded)) result.AddRange(expanded);
            else throw new MedPeftException($"{context}: unknown tower \"{n}\" (known: {string.Join(", ", Towers.Keys.Concat(Aliases.Keys))})");
        }
        return result.Distinct().ToList();
    }
}
