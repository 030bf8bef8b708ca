using MedPeft.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace MedPeft.Tuning;

/// <summary>The registry of tuning methods selectable by name. Adding a method = its file + one line here: the study's
/// built-in grid, `inspect`, `train`, adapter loading (by peft_type, <see cref="ForAdapter"/>) and finalizing all go
/// through this list.</summary>
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
        ["dora"] = new DoraMethod(),
        ["ia3"] = new Ia3Method(),
        ["prefix"] = PrefixTuningMethod.Prefix(),
        ["ptuning"] = PrefixTuningMethod.PTuningV2(),
        ["prompt"] = new PromptTuningMethod(),
        ["ptuning-v1"] = new PTuningMethod(),
    };

    public static ITuningMethod Get(string name, string context) =>
        All.TryGetValue(name, out var m) ? m
            : throw new MedPeftException($"{context}: unknown tuning method \"{name}\" (known: {string.Join(", ", All.Keys)})");

    /// <summary>The config record type of a peft_type (the one its registered methods read).</summary>
    public static Type ConfigTypeOf(string peftType, string source) =>
        All.Values.FirstOrDefault(m => m.PeftType == peftType)?.ConfigType
            ?? throw new MedPeftException($"{source}: peft_type \"{peftType}\" is not supported ({string.Join(", ", All.Values.Select(m => m.PeftType).OfType<string>().Distinct())})");

    /// <summary>The registered method that loads adapters with this config (the first whose Reads accepts it).</summary>
    public static ITuningMethod ForAdapter(PeftAdapterConfig config, string source) =>
        All.Values.FirstOrDefault(m => m.Reads(config))
            ?? throw new MedPeftException($"{source}: peft_type \"{config.PeftType}\" is not supported ({string.Join(", ", All.Values.Select(m => m.PeftType).OfType<string>().Distinct())})");

    /// <summary>Loads a PEFT adapter folder onto a base model through the method that reads it; returns that method (whose
    /// <see cref="ITuningMethod.Finalize"/> ends it) and the config.</summary>
    public static (ITuningMethod Method, PeftAdapterConfig Config) LoadAdapter(nn.Module model, string adapterDir, bool trainable = false)
    {
        var config = PeftAdapters.ReadConfig(adapterDir);
        var source = Path.Combine(adapterDir, PeftAdapters.ConfigFile);
        var method = ForAdapter(config, source);
        var state = Checkpoint.ReadSafetensors(Path.Combine(adapterDir, PeftAdapters.WeightsFile));
        try { return (method.Load(model, config, state, adapterDir, trainable), config); }
        finally { foreach (var t in state.Values) t.Dispose(); }
    }
}
