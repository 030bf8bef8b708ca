using TorchSharp;
using static TorchSharp.torch;

namespace MedPeft.Models;

/// <summary>HF's ACT2FN names → functions, for the activations our architectures use.</summary>
public static class Activations
{
    public static Func<Tensor, Tensor> Get(string name) => name switch
    {
        "gelu" => x => nn.functional.gelu(x),                       // exact (erf) GELU, as torch.nn.GELU()
        "gelu_new" or "gelu_pytorch_tanh" => x => nn.functional.gelu(x, approximate: TorchSharp.Modules.GELU.Approximate.tanh),
        "quick_gelu" => x => x * torch.sigmoid(1.702 * x),
        "relu" => x => nn.functional.relu(x),
        "silu" or "swish" => x => nn.functional.silu(x),
        "tanh" => x => torch.tanh(x),
        _ => throw new MedPeftException($"unsupported activation \"{name}\" (hidden_act)"),
    };
}
