using System.Globalization;
using MedPeft.Models;

namespace MedPeft.Tuning;

public enum MethodOptionKind { Integer, Number, Boolean, List, Text }

/// <summary>One per-method option: its study-file name (PEFT's config field name where PEFT has one) and value type.</summary>
public sealed record MethodOption(string Key, MethodOptionKind Kind, string Help)
{
    /// <summary>Means the same for every method taking it (num_virtual_tokens), so one value may set several methods of
    /// different kinds; otherwise (lora's and ia3's "targets") such a value is ambiguous.</summary>
    public bool Shared { get; init; }
}

/// <summary>Parses one option value for a method (errors name the option: <c>where</c>).</summary>
public static class OptionValues
{
    public static int Int(string value, string where) =>
        int.TryParse(value, NumberStyles.Integer, CultureInfo.InvariantCulture, out var i) ? i : throw new MedPeftException($"{where}: expected an integer, got \"{value}\"");
    public static double Num(string value, string where) =>
        double.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out var d) && double.IsFinite(d) ? d : throw new MedPeftException($"{where}: expected a number, got \"{value}\"");
    public static bool Bool(string value, string where) =>
        bool.TryParse(value, out var b) ? b : throw new MedPeftException($"{where}: expected true or false, got \"{value}\"");
    public static List<string> List(string value) => value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).ToList();
}

/// <summary>Per-method settings that replace a method's defaults: the ONE place that turns option values into method
/// configs and method instances, used by `medpeft train` (flags) and study files (strategy options) alike, so the same
/// options give the same configs. Which options a method takes and what they mean is the method's own
/// (<see cref="ITuningMethod.Options"/>, <see cref="ITuningMethod.WithOption"/>, <see cref="ITuningMethod.Configure"/>);
/// a method without options keeps the registry's instance. Family-dependent defaults (LoRA / IA3 targets) are filled in
/// by <see cref="Methods"/>.</summary>
public sealed record MethodOptions
{
    /// <summary>The settings given, per method name (methods without given options are absent).</summary>
    public IReadOnlyDictionary<string, PeftConfig> Configs { get; init; } = new Dictionary<string, PeftConfig>();

    public LoraConfig? Lora => Configs.GetValueOrDefault("lora") as LoraConfig;
    public Ia3Config? Ia3 => Configs.GetValueOrDefault("ia3") as Ia3Config;
    /// <summary>"prefix" or "ptuning" (P-tuning v2 always without the MLP).</summary>
    public PrefixTuningConfig? Prefix => (Configs.GetValueOrDefault("prefix") ?? Configs.GetValueOrDefault("ptuning")) as PrefixTuningConfig;
    public PromptTuningConfig? Prompt => Configs.GetValueOrDefault("prompt") as PromptTuningConfig;
    /// <summary>"ptuning-v1".</summary>
    public PromptEncoderConfig? PTuning => Configs.GetValueOrDefault("ptuning-v1") as PromptEncoderConfig;

    /// <summary>The options each registered method accepts, by study-file name.</summary>
    public static IReadOnlyDictionary<string, MethodOption[]> Known =>
        TuningMethods.All.Where(kv => kv.Value.Options.Count > 0).ToDictionary(kv => kv.Key, kv => kv.Value.Options.ToArray());

    /// <summary>The method names of a strategy spec ("lora@text+ln" → lora, ln).</summary>
    public static List<string> MethodsOf(string spec) => spec.Split('+').Select(t => t.Split('@')[0].Trim()).Distinct().ToList();

    /// <summary>The methods among <paramref name="methods"/> that take option <paramref name="key"/>.</summary>
    public static List<string> Owners(string key, IEnumerable<string> methods) =>
        methods.Where(m => TuningMethods.All.TryGetValue(m, out var t) && t.Options.Any(x => x.Key == key)).ToList();

    /// <summary>A method named for an option, and the other methods with its config record taking that option (a LoRA
    /// flag also sets DoRA, which is PEFT's LoraConfig too).</summary>
    static List<string> WithSameConfig(string method, string key) =>
        [method, .. TuningMethods.All.Where(kv => kv.Key != method && TuningMethods.All.TryGetValue(method, out var m) && m.ConfigType is not null
            && kv.Value.ConfigType == m.ConfigType && kv.Value.Options.Any(o => o.Key == key)).Select(kv => kv.Key)];

    /// <summary>Builds the configs from option values. <c>Method</c> null = every method of <paramref name="methods"/>
    /// taking the key (study files; null <paramref name="methods"/> = every known method, as the CLI's flags that several
    /// methods share, e.g. --num-virtual-tokens). Errors are one line starting with <paramref name="context"/> and naming
    /// the option.</summary>
    public static MethodOptions Parse(IEnumerable<(string? Method, string Key, string Value)> options, IReadOnlyCollection<string>? methods, string context)
    {
        var scope = methods ?? Known.Keys.ToList();
        var configs = new Dictionary<string, PeftConfig>();
        foreach (var (method, key, value) in options)
        {
            var owners = method is not null ? WithSameConfig(method, key) : Owners(key, scope);
            if (owners.Count == 0)
            {
                var allowed = scope.SelectMany(m => Known.TryGetValue(m, out var o) ? o.Select(x => x.Key) : []).Distinct().ToList();
                throw new MedPeftException($"{context}: unknown option \"{key}\" ({(allowed.Count == 0 ? "its methods take no options" : "known: " + string.Join(", ", allowed))})");
            }
            // One key, settings of different kinds (lora's and ia3's "targets"): the caller must say which.
            var kinds = owners.GroupBy(m => TuningMethods.All.TryGetValue(m, out var t) ? t.ConfigType : null).ToList();
            bool shared = owners.All(m => TuningMethods.All.TryGetValue(m, out var t) && t.Options.Any(o => o.Key == key && o.Shared));
            if (method is null && kinds.Count > 1 && !shared)
                throw new MedPeftException($"{context}: option \"{key}\" is ambiguous between {string.Join(" and ", kinds.Select(g => g.First()))}; give them as separate strategies");
            foreach (var m in owners)
            {
                if (!TuningMethods.All.TryGetValue(m, out var tm) || tm.Options.All(o => o.Key != key))
                    throw new MedPeftException($"{context}: {m} has no option \"{key}\"");
                configs[m] = tm.WithOption(configs.GetValueOrDefault(m), key, value, $"{context}: {m} option \"{key}\"");
            }
        }
        foreach (var (m, config) in configs) TuningMethods.All[m].Configure(config, null, null, context);   // validates; family defaults come later
        return new MethodOptions { Configs = configs };
    }

    /// <summary>Method instances replacing the registry's by name (see TuningStrategy.Parse); null when no method has
    /// options. Empty target lists take the family's defaults (BLIP: query/value, key/value/output.dense; LLaVA:
    /// q_proj/v_proj, k_proj/v_proj/down_proj). A TEXT prompt init is tokenized with <paramref name="encode"/> (the
    /// model's tokenizer with its special tokens, as PEFT calls the tokenizer).</summary>
    public IReadOnlyDictionary<string, ITuningMethod>? Methods(TowerLayout layout, Func<string, int[]>? encode) =>
        Configs.Count == 0 ? null : Configs.ToDictionary(kv => kv.Key, kv => TuningMethods.All[kv.Key].Configure(kv.Value, layout, encode, kv.Key));
}
