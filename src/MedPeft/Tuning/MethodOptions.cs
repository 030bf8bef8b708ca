using System.Globalization;
using MedPeft.Models;

namespace MedPeft.Tuning;

public enum MethodOptionKind { Integer, Number, Boolean, List, Text }

/// <summary>One per-method option: its study-file name (PEFT's config field name where PEFT has one) and value type.</summary>
public sealed record MethodOption(string Key, MethodOptionKind Kind, string Help);

/// <summary>Per-method settings that replace a method's defaults: the ONE place that turns option values into method
/// configs and method instances, used by `medpeft train` (flags) and study files (strategy options) alike, so the same
/// options give the same configs. A method without options keeps the registry's instance. Empty LoRA / IA3 target lists
/// mean the model family's defaults (resolved in <see cref="Methods"/>).</summary>
public sealed record MethodOptions
{
    public LoraConfig? Lora { get; init; }
    public Ia3Config? Ia3 { get; init; }
    /// <summary>"prefix" and "ptuning" (P-tuning v2 always without the MLP).</summary>
    public PrefixTuningConfig? Prefix { get; init; }
    public PromptTuningConfig? Prompt { get; init; }
    /// <summary>"ptuning-v1".</summary>
    public PromptEncoderConfig? PTuning { get; init; }

    static MethodOption O(string key, MethodOptionKind kind, string help) => new(key, kind, help);
    static readonly MethodOption Tokens = O("num_virtual_tokens", MethodOptionKind.Integer, "virtual tokens");

    /// <summary>The options each method accepts, by study-file name.</summary>
    public static readonly IReadOnlyDictionary<string, MethodOption[]> Known = new Dictionary<string, MethodOption[]>
    {
        ["lora"] =
        [
            O("r", MethodOptionKind.Integer, "rank"), O("alpha", MethodOptionKind.Number, "lora_alpha"), O("dropout", MethodOptionKind.Number, "lora_dropout"),
            O("targets", MethodOptionKind.List, "target_modules suffixes"), O("rslora", MethodOptionKind.Boolean, "use_rslora"),
        ],
        ["ia3"] = [O("targets", MethodOptionKind.List, "target_modules suffixes"), O("feedforward", MethodOptionKind.List, "feedforward_modules suffixes")],
        ["prefix"] = [Tokens, O("encoder_hidden_size", MethodOptionKind.Integer, "MLP width"), O("prefix_projection", MethodOptionKind.Boolean, "reparameterise with the MLP")],
        ["ptuning"] = [Tokens],
        ["prompt"] = [Tokens, O("prompt_init_text", MethodOptionKind.Text, "TEXT init from this text's word embeddings")],
        ["ptuning-v1"] =
        [
            Tokens, O("encoder_hidden_size", MethodOptionKind.Integer, "prompt encoder width (default token_dim)"),
            O("encoder_reparameterization_type", MethodOptionKind.Text, "MLP or LSTM"),
            O("encoder_num_layers", MethodOptionKind.Integer, "LSTM layers"), O("encoder_dropout", MethodOptionKind.Number, "LSTM dropout"),
        ],
    };

    /// <summary>The method names of a strategy spec ("lora@text+ln" → lora, ln).</summary>
    public static List<string> MethodsOf(string spec) => spec.Split('+').Select(t => t.Split('@')[0].Trim()).Distinct().ToList();

    /// <summary>The methods among <paramref name="methods"/> that take option <paramref name="key"/>.</summary>
    public static List<string> Owners(string key, IEnumerable<string> methods) =>
        methods.Where(m => Known.TryGetValue(m, out var o) && o.Any(x => x.Key == key)).ToList();

    /// <summary>Builds the configs from option values. <c>Method</c> null = every method of <paramref name="methods"/>
    /// taking the key (study files; null <paramref name="methods"/> = every known method, as the CLI's flags that several
    /// methods share, e.g. --num-virtual-tokens). Errors are one line starting with <paramref name="context"/> and naming
    /// the option.</summary>
    public static MethodOptions Parse(IEnumerable<(string? Method, string Key, string Value)> options, IReadOnlyCollection<string>? methods, string context)
    {
        var scope = methods ?? Known.Keys.ToList();
        var result = new MethodOptions();
        foreach (var (method, key, value) in options)
        {
            var owners = method is not null ? [method] : Owners(key, scope);
            if (owners.Count == 0)
            {
                var allowed = scope.SelectMany(m => Known.TryGetValue(m, out var o) ? o.Select(x => x.Key) : []).Distinct().ToList();
                throw new MedPeftException($"{context}: unknown option \"{key}\" ({(allowed.Count == 0 ? "its methods take no options" : "known: " + string.Join(", ", allowed))})");
            }
            if (method is null && owners.Contains("lora") && owners.Contains("ia3"))
                throw new MedPeftException($"{context}: option \"{key}\" is ambiguous between lora and ia3; give them as separate strategies");
            foreach (var m in owners) result = result.With(m, key, value, context);
        }
        // Empty targets = the family's defaults, filled in by Methods(layout): validate the rest.
        (result.Lora is { TargetModules.Count: 0, TargetRegex: null } l ? l with { TargetModules = ["(family default)"] } : result.Lora)?.Validate(context);
        result.Prefix?.Validate(context);
        result.PTuning?.Validate(context);
        if (result.Prompt is { NumVirtualTokens: <= 0 } p) throw new MedPeftException($"{context}: num_virtual_tokens must be positive (got {p.NumVirtualTokens})");
        return result;
    }

    MethodOptions With(string method, string key, string value, string context)
    {
        if (!Known.TryGetValue(method, out var known) || known.All(o => o.Key != key))
            throw new MedPeftException($"{context}: {method} has no option \"{key}\"");
        string where = $"{context}: {method} option \"{key}\"";
        int Int() => int.TryParse(value, NumberStyles.Integer, CultureInfo.InvariantCulture, out var i) ? i : throw new MedPeftException($"{where}: expected an integer, got \"{value}\"");
        double Num() => double.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out var d) && double.IsFinite(d) ? d : throw new MedPeftException($"{where}: expected a number, got \"{value}\"");
        bool Bool() => bool.TryParse(value, out var b) ? b : throw new MedPeftException($"{where}: expected true or false, got \"{value}\"");
        List<string> List() => value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).ToList();
        switch (method)
        {
            case "lora":
            {
                var c = Lora ?? new LoraConfig { TargetModules = [] };
                return this with
                {
                    Lora = key switch
                    {
                        "r" => c with { R = Int() }, "alpha" => c with { LoraAlpha = Num() }, "dropout" => c with { LoraDropout = Num() },
                        "targets" => c with { TargetModules = List() }, _ => c with { UseRslora = Bool() },
                    },
                };
            }
            case "ia3":
            {
                var c = Ia3 ?? new Ia3Config { TargetModules = [], FeedforwardModules = [] };
                return this with { Ia3 = key == "targets" ? c with { TargetModules = List() } : c with { FeedforwardModules = List() } };
            }
            case "prefix" or "ptuning":
            {
                var c = Prefix ?? new PrefixTuningConfig();
                return this with
                {
                    Prefix = key switch
                    {
                        "num_virtual_tokens" => c with { NumVirtualTokens = Int() }, "encoder_hidden_size" => c with { EncoderHiddenSize = Int() },
                        _ => c with { PrefixProjection = Bool() },
                    },
                };
            }
            case "prompt":
            {
                var c = Prompt ?? new PromptTuningConfig();
                return this with
                {
                    Prompt = key == "num_virtual_tokens" ? c with { NumVirtualTokens = Int() }
                        : value.Length == 0 ? throw new MedPeftException($"{where}: empty text")
                        : c with { PromptTuningInit = "TEXT", PromptTuningInitText = value },
                };
            }
            default:   // ptuning-v1
            {
                var c = PTuning ?? new PromptEncoderConfig();
                return this with
                {
                    PTuning = key switch
                    {
                        "num_virtual_tokens" => c with { NumVirtualTokens = Int() }, "encoder_hidden_size" => c with { EncoderHiddenSize = Int() },
                        "encoder_reparameterization_type" => c with { EncoderReparameterizationType = value.ToUpperInvariant() },
                        "encoder_num_layers" => c with { EncoderNumLayers = Int() }, _ => c with { EncoderDropout = Num() },
                    },
                };
            }
        }
    }

    /// <summary>Method instances replacing the registry's by name (see TuningStrategy.Parse); null when no method has
    /// options. Empty target lists take the family's defaults (BLIP: query/value, key/value/output.dense; LLaVA:
    /// q_proj/v_proj, k_proj/v_proj/down_proj). A TEXT prompt init is tokenized with <paramref name="encode"/> (the
    /// model's tokenizer with its special tokens, as PEFT calls the tokenizer).</summary>
    public IReadOnlyDictionary<string, ITuningMethod>? Methods(TowerLayout layout, Func<string, int[]>? encode)
    {
        var methods = new Dictionary<string, ITuningMethod>();
        if (Lora is { } lora)
            methods["lora"] = new LoraMethod(lora.TargetModules.Count == 0 && lora.TargetRegex is null ? lora with { TargetModules = LoraMethod.DefaultFor(layout).TargetModules } : lora);
        if (Ia3 is { } ia3)
        {
            var d = Ia3Method.DefaultFor(layout);
            methods["ia3"] = new Ia3Method(ia3.TargetModules.Count == 0 && ia3.TargetRegex is null
                ? ia3 with { TargetModules = d.TargetModules, FeedforwardModules = ia3.FeedforwardModules.Count == 0 ? d.FeedforwardModules : ia3.FeedforwardModules }
                : ia3);
        }
        if (Prefix is { } prefix) { methods["prefix"] = PrefixTuningMethod.Prefix(prefix); methods["ptuning"] = PrefixTuningMethod.PTuningV2(prefix); }
        if (Prompt is { } prompt)
        {
            if (prompt.PromptTuningInit == "TEXT" && prompt.InitTokenIds is null && prompt.PromptTuningInitText is { } text)
            {
                if (encode is null) throw new MedPeftException($"prompt_init_text \"{text}\": no tokenizer to tokenize it with here");
                prompt = prompt with { InitTokenIds = encode(text).Select(i => (long)i).ToList() };
            }
            methods["prompt"] = new PromptTuningMethod(prompt);
        }
        if (PTuning is { } pTuning) methods["ptuning-v1"] = new PTuningMethod(pTuning);
        return methods.Count == 0 ? null : methods;
    }
}
