using TorchSharp;

namespace MedPeft.Tuning;

/// <summary>A fine-tuning method (litgpt style: one file per method behind this interface, one registry line to add
/// one). Apply marks what trains — and, for extrinsic methods, adds the modules that do — on a model whose parameters
/// all start frozen; it runs once per term of a strategy such as "full@vision+ln@text".</summary>
public interface ITuningMethod
{
    string Name { get; }
    string Description { get; }
    void Apply(torch.nn.Module model, TowerLayout layout, IReadOnlyList<string> towers);
}
