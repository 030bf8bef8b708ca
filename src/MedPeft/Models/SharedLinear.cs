using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MedPeft.Models;

/// <summary>A linear layer (parameters named weight/bias, as nn.Linear) whose tensors may be owned by another module
/// too: tied LM heads share the word-embedding matrix and, in BLIP, the head's bias. TorchSharp's Linear setters
/// wrap an assigned tensor in a new Parameter (two leaves sharing storage, each with its own gradient), which is not
/// a tie; registering the very same Parameter object is.</summary>
public sealed class SharedLinear : nn.Module<Tensor, Tensor>
{
    public Parameter weight { get; }
    public Parameter? bias { get; }

    public SharedLinear(Parameter weight, Parameter? bias) : base(nameof(SharedLinear))
    {
        this.weight = weight;
        this.bias = bias;
        register_parameter("weight", weight);
        if (bias is not null) register_parameter("bias", bias);
    }

    public override Tensor forward(Tensor x) => nn.functional.linear(x, weight, bias);
}
