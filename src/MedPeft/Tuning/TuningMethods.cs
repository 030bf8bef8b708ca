namespace MedPeft.Tuning;

/// <summary>The registry of tuning methods selectable by name. Adding a method = one file + one line here.</summary>
public static class TuningMethods
{
    public static readonly IReadOnlyDictionary<string, ITuningMethod> All = new Dictionary<string, ITuningMethod>
    {
        ["full"] = SelectiveTuning.Full,
        ["ln"] = SelectiveTuning.LayerNorm,
        ["ffn"] = SelectiveTuning.FeedForward,
        ["attn"] = SelectiveTuning.Attention,
        ["bias"] = SelectiveTuning.Bias,
        ["lora"] = new LoraMethod(),
        ["ia3"] = new Ia3Method(),
        ["prefix"] = PrefixTuningMethod.Prefix(),
        ["ptuning"] = PrefixTuningMethod.PTuningV2(),
        ["prompt"] = new PromptTuningMethod(),
        ["ptuning-v1"] = new PTuningMethod(),
    };

    public static ITuningMethod Get(string name, string context) =>
        All.TryGetValue(name, out var m) ? m
            : throw new MedPeftException($"{context}: unknown tuning method \"{name}\" (known: {string.Join(", ", All.Keys)})");
}
