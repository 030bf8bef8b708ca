using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MedPeft.Models.Blip;

// The BLIP ViT image encoder, field for field as HF's modeling_blip.py (vision_model.*), so state_dict keys equal
// the safetensors keys: embeddings.{class_embedding,patch_embedding,position_embedding},
// encoder.layers.N.{self_attn.{qkv,projection},layer_norm1,mlp.{fc1,fc2},layer_norm2}, post_layernorm.

public sealed class BlipVisionEmbeddings : nn.Module<Tensor, Tensor>
{
    public Parameter class_embedding;
    public Conv2d patch_embedding;
    public Parameter position_embedding;

    public BlipVisionEmbeddings(BlipVisionConfig c) : base(nameof(BlipVisionEmbeddings))
    {
        class_embedding = new Parameter(torch.zeros(1, 1, c.HiddenSize));
        patch_embedding = nn.Conv2d(3, c.HiddenSize, kernel_size: c.PatchSize, stride: c.PatchSize);
        position_embedding = new Parameter(torch.zeros(1, c.NumPatches + 1, c.HiddenSize));
        RegisterComponents();
    }

    public override Tensor forward(Tensor pixel_values)
    {
        using var scope = torch.NewDisposeScope();
        var b = pixel_values.shape[0];
        var patches = patch_embedding.forward(pixel_values.to(patch_embedding.weight!.dtype)).flatten(2).transpose(1, 2);
        var cls = class_embedding.expand(b, 1, -1);
        var x = torch.cat([cls, patches], 1);
        x = x + position_embedding[.., ..(int)x.shape[1], ..];
        return x.MoveToOuterDisposeScope();
    }
}

public sealed class BlipAttention : nn.Module<Tensor, Tensor>
{
    public nn.Module<Tensor, Tensor> qkv;
    public nn.Module<Tensor, Tensor> projection;
    readonly int _heads;
    readonly double _dropout;

    public BlipAttention(BlipVisionConfig c) : base(nameof(BlipAttention))
    {
        _heads = c.NumAttentionHeads;
        _dropout = c.AttentionDropout;
        qkv = nn.Linear(c.HiddenSize, 3 * c.HiddenSize);
        projection = nn.Linear(c.HiddenSize, c.HiddenSize);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = torch.NewDisposeScope();
        long b = x.shape[0], n = x.shape[1], d = x.shape[2];
        // [B, N, 3, H, hd] -> [3, B, H, N, hd], as HF splits the fused projection.
        var mixed = qkv.call(x).reshape(b, n, 3, _heads, d / _heads).permute(2, 0, 3, 1, 4);
        var ctx = nn.functional.scaled_dot_product_attention(mixed[0], mixed[1], mixed[2], p: training ? _dropout : 0.0);
        ctx = ctx.permute(0, 2, 1, 3).reshape(b, n, d);
        return projection.call(ctx).MoveToOuterDisposeScope();
    }
}

public sealed class BlipMLP : nn.Module<Tensor, Tensor>
{
    public nn.Module<Tensor, Tensor> fc1;
    public nn.Module<Tensor, Tensor> fc2;
    readonly Func<Tensor, Tensor> _act;

    public BlipMLP(int hidden, int intermediate, string act) : base(nameof(BlipMLP))
    {
        fc1 = nn.Linear(hidden, intermediate);
        fc2 = nn.Linear(intermediate, hidden);
        _act = Activations.Get(act);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = torch.NewDisposeScope();
        return fc2.call(_act(fc1.call(x))).MoveToOuterDisposeScope();
    }
}

public sealed class BlipEncoderLayer : nn.Module<Tensor, Tensor>
{
    public BlipAttention self_attn;
    public LayerNorm layer_norm1;
    public BlipMLP mlp;
    public LayerNorm layer_norm2;

    public BlipEncoderLayer(BlipVisionConfig c) : base(nameof(BlipEncoderLayer))
    {
        self_attn = new BlipAttention(c);
        layer_norm1 = nn.LayerNorm(c.HiddenSize, eps: c.LayerNormEps);
        mlp = new BlipMLP(c.HiddenSize, c.IntermediateSize, c.HiddenAct);
        layer_norm2 = nn.LayerNorm(c.HiddenSize, eps: c.LayerNormEps);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = torch.NewDisposeScope();
        x = x + self_attn.forward(layer_norm1.forward(x));   // pre-norm ViT block
        x = x + mlp.forward(layer_norm2.forward(x));
        return x.MoveToOuterDisposeScope();
    }
}

public sealed class BlipEncoder : nn.Module<Tensor, Tensor>, IGradientCheckpointing
{
    public bool GradientCheckpointing { get; set; }

    public ModuleList<BlipEncoderLayer> layers;

    public BlipEncoder(BlipVisionConfig c) : base(nameof(BlipEncoder))
    {
        layers = new ModuleList<BlipEncoderLayer>(Enumerable.Range(0, c.NumHiddenLayers).Select(_ => new BlipEncoderLayer(c)).ToArray());
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = torch.NewDisposeScope();
        bool checkpoint = Checkpointing.Active(this);
        foreach (var layer in layers) x = checkpoint ? Checkpointing.Run(layer, t => layer.forward(t[0]!), x) : layer.forward(x);
        return x.MoveToOuterDisposeScope();
    }
}

/// <summary>Output of <see cref="BlipVisionModel"/>: last_hidden_state is after post_layernorm (HF's image_embeds);
/// pooler_output is its CLS row passed through post_layernorm a second time, exactly as HF does.</summary>
public sealed record BlipVisionOutput(Tensor LastHiddenState, Tensor PoolerOutput);

public sealed class BlipVisionModel : nn.Module<Tensor, BlipVisionOutput>
{
    public BlipVisionEmbeddings embeddings;
    public BlipEncoder encoder;
    public LayerNorm post_layernorm;

    public BlipVisionModel(BlipVisionConfig c) : base(nameof(BlipVisionModel))
    {
        embeddings = new BlipVisionEmbeddings(c);
        encoder = new BlipEncoder(c);
        post_layernorm = nn.LayerNorm(c.HiddenSize, eps: c.LayerNormEps);
        RegisterComponents();
    }

    public override BlipVisionOutput forward(Tensor pixel_values)
    {
        using var scope = torch.NewDisposeScope();
        var last = post_layernorm.forward(encoder.forward(embeddings.forward(pixel_values)));
        var pooled = post_layernorm.forward(last[.., 0, ..]);
        return new BlipVisionOutput(last.MoveToOuterDisposeScope(), pooled.MoveToOuterDisposeScope());
    }
}
