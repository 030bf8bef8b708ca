using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MedPeft.Models;

/// <summary>nn.Embedding as a managed module (parameter "weight", optional padding_idx). TorchSharp's Embedding keeps
/// its weight in native code and hands out a new Parameter wrapper on every access, so it cannot be tied to an LM
/// head; this one owns one Parameter object that a <see cref="SharedLinear"/> can register too.</summary>
public sealed class TokenEmbedding : nn.Module<Tensor, Tensor>
{
    public Parameter weight;
    readonly long? _paddingIdx;

    public TokenEmbedding(long numEmbeddings, long dim, long? paddingIdx = null) : base(nameof(TokenEmbedding))
    {
        weight = new Parameter(torch.empty(numEmbeddings, dim).normal_());
        _paddingIdx = paddingIdx;
        if (paddingIdx is long p) using (torch.no_grad()) weight[p].zero_();
        RegisterComponents();
    }

    public override Tensor forward(Tensor ids)
    {
        using var scope = torch.NewDisposeScope();
        var flat = ids.reshape(-1);
        var x = weight.index_select(0, flat);
        // padding_idx semantics: the padding row receives no gradient.
        if (_paddingIdx is long p)
            x = torch.where(flat.eq(p).unsqueeze(1), weight[p].detach().unsqueeze(0), x);
        var shape = ids.shape.Append(weight.shape[1]).ToArray();
        return x.reshape(shape).MoveToOuterDisposeScope();
    }
}
