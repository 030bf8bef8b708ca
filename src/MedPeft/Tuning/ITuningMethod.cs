using TorchSharp;
using static TorchSharp.torch;

namespace MedPeft.Tuning;

/// <summary>How a method leaves a trained model (<see cref="ITuningMethod.Finalize"/>).</summary>
public enum FinalizeMode
{
    /// <summary>Fold the method into the base weights and remove its modules (PEFT's merge_and_unload): a plain model
    /// that loads strictly. Methods without a merged form (prompt learning) refuse with one clear line.</summary>
    Merge,
    /// <summary>Leave the method's modules in place (inference or further training with the adapter live).</summary>
    KeepAdapter,
    /// <summary>For writing <c>model/</c> next to a saved <c>adapter/</c>: merge what has a merged form, remove (PEFT's
    /// unload) what has none — its effect then lives only in the adapter folder.</summary>
    MergeOrRemove,
}

/// <summary>A fine-tuning method with its whole life cycle (litgpt style: one file per method behind this interface,
/// one registry line in <see cref="TuningMethods"/> to add one):
/// <list type="number">
/// <item><see cref="Apply"/> marks what trains — and, for extrinsic methods, adds the modules that do — on a model whose
/// parameters all start frozen; it runs once per term of a strategy such as "full@vision+ln@text".</item>
/// <item><see cref="SaveAdapter"/> writes what was trained as a PEFT adapter folder of type <see cref="PeftType"/>.</item>
/// <item><see cref="Load"/> puts a saved adapter (of a type this method <see cref="Reads"/>) onto a base model, for
/// inference or further training; the registry dispatches on the adapter's peft_type.</item>
/// <item><see cref="Finalize"/> ends the method's life on the model: merge into the weights, or keep the adapter.</item>
/// </list></summary>
public interface ITuningMethod
{
    string Name { get; }
    string Description { get; }

    /// <summary>PEFT's peft_type of this method's adapter (null: no adapter form, e.g. full fine-tuning).</summary>
    string? PeftType { get; }

    /// <summary>The PEFT config record this method saves and reads (a <see cref="PeftConfig"/>; null with no PEFT type).</summary>
    Type? ConfigType { get; }

    /// <summary>The method's default peak learning rate when Experiments.StrategyDefaults has no swept value for it.</summary>
    double? DefaultLearningRate => null;

    /// <summary>False for methods whose effect cannot be folded into the weights (prompt learning).</summary>
    bool CanMerge { get; }

    /// <summary>The options this method takes (study-file names, PEFT's field names where PEFT has one); none by default.</summary>
    IReadOnlyList<MethodOption> Options => [];

    /// <summary>Applies one option value to this method's settings (<paramref name="config"/> null: its defaults, with
    /// family-dependent parts left empty); <paramref name="where"/> names the option in errors.</summary>
    PeftConfig WithOption(PeftConfig? config, string key, string value, string where) =>
        throw new MedPeftException($"{where}: {Name} takes no options");

    /// <summary>This method with the settings of <paramref name="config"/> for a model family (empty family-dependent
    /// parts take the family's defaults; a TEXT prompt init is tokenized with <paramref name="encode"/>). With
    /// <paramref name="layout"/> null it only validates (errors start with <paramref name="context"/>).</summary>
    ITuningMethod Configure(PeftConfig config, TowerLayout? layout, Func<string, int[]>? encode, string context) => this;

    void Apply(nn.Module model, TowerLayout layout, IReadOnlyList<string> towers);

    /// <summary>Writes adapter_config.json + adapter_model.safetensors (PEFT 0.11's format and keys) for what
    /// <see cref="Apply"/> added on <paramref name="towers"/>. <paramref name="taskType"/> is PEFT's task_type.</summary>
    void SaveAdapter(nn.Module model, TowerLayout layout, IReadOnlyList<string> towers, string dir, string? taskType);

    /// <summary>True when this method loads adapters with this config (by default: its PEFT type).</summary>
    bool Reads(PeftAdapterConfig config) => PeftType is not null && config.PeftType == PeftType;

    /// <summary>Adds the adapter's modules to a base model and loads the tensors of <paramref name="state"/> (PEFT's
    /// PeftModel.from_pretrained); <paramref name="trainable"/> = PEFT's is_trainable. <paramref name="source"/> names the
    /// folder in errors. Returns the method configured as the adapter (its Finalize ends it, its SaveAdapter writes the
    /// same config again).</summary>
    ITuningMethod Load(nn.Module model, PeftAdapterConfig config, IReadOnlyDictionary<string, Tensor> state, string source, bool trainable);

    /// <summary>Ends the method's life on <paramref name="model"/> (see <see cref="FinalizeMode"/>).</summary>
    void Finalize(nn.Module model, FinalizeMode mode);
}
