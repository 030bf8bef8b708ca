using System.Text.Json.Serialization;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MedPeft.Models.Clip;

// The CLIP ViT image encoder (HF modeling_clip.py, CLIPVisionModel), field for field, so state_dict keys equal the
// safetensors keys: vision_model.embeddings.{class_embedding,patch_embedding.weight,position_embedding.weight},
// vision_model.pre_layrnorm (sic, HF's spelling), vision_model.encoder.layers.N.{self_attn.{q,k,v,out}_proj,
// layer_norm1, mlp.{fc1,fc2}, layer_norm2}, vision_model.post_layernorm.

/// <summary>HF's CLIPVisionConfig (transformers 4.37): field names and defaults of the class, so a config.json written
/// by save_pretrained (a diff against these defaults) loads as is.</summary>
public sealed class CLIPVisionConfig
{
    [JsonPropertyName("model_type")] public string ModelType { get; set; } = "clip_vision_model";
    [JsonPropertyName("hidden_size")] public int HiddenSize { get; set; } = 768;
    [JsonPropertyName("intermediate_size")] public int IntermediateSize { get; set; } = 3072;
    [JsonPropertyName("projection_dim")] public int ProjectionDim { get; set; } = 512;
    [JsonPropertyName("num_hidden_layers")] public int NumHiddenLayers { get; set; } = 12;
    [JsonPropertyName("num_attention_heads")] public int NumAttentionHeads { get; set; } = 12;
    [JsonPropertyName("num_channels")] public int NumChannels { get; set; } = 3;
    [JsonPropertyName("image_size")] public int ImageSize { get; set; } = 224;
    [JsonPropertyName("patch_size")] public int PatchSize { get; set; } = 32;
    [JsonPropertyName("hidden_act")] public string HiddenAct { get; set; } = "quick_gelu";
    [JsonPropertyName("layer_norm_eps")] public double LayerNormEps { get; set; } = 1e-5;
    [JsonPropertyName("attention_dropout")] public double AttentionDropout { get; set; } = 0.0;
    [JsonPropertyName("initializer_range")] public double InitializerRange { get; set; } = 0.02;
    [JsonPropertyName("initializer_factor")] public double InitializerFactor { get; set; } = 1.0;

    [JsonIgnore] public int NumPatches => (ImageSize / PatchSize) * (ImageSize / PatchSize);
    [JsonIgnore] public int NumPositions => NumPatches + 1;

    public void Validate(string source, string prefix = "vision_config")
    {
        void Check(bool ok, string field, string why) { if (!ok) throw new MedPeftException($"{source}: field \"{prefix}.{field}\" {why}"); }
        Check(HiddenSize > 0 && NumAttentionHeads > 0 && HiddenSize % NumAttentionHeads == 0, "hidden_size", "must be a positive multiple of num_attention_heads");
        Check(PatchSize > 0 && ImageSize % PatchSize == 0, "image_size", "must be divisible by patch_size");
        Check(NumHiddenLayers > 0, "num_hidden_layers", "must be positive");
        Activations.Get(HiddenAct);
    }
}

public sealed class CLIPVisionEmbeddings : nn.Module<Tensor, Tensor>
{
    public Parameter class_embedding;
    public Conv2d patch_embedding;
    public TokenEmbedding position_embedding;

    public CLIPVisionEmbeddings(CLIPVisionConfig c) : base(nameof(CLIPVisionEmbeddings))
    {
        class_embedding = new Parameter(torch.randn(c.HiddenSize));
        patch_embedding = nn.Conv2d(c.NumChannels, c.HiddenSize, kernel_size: c.PatchSize, stride: c.PatchSize, bias: false);
        position_embedding = new TokenEmbedding(c.NumPositions, c.HiddenSize);
        RegisterComponents();
    }

    public override Tensor forward(Tensor pixel_values)
    {
        using var scope = torch.NewDisposeScope();
        long b = pixel_values.shape[0];
        var patches = patch_embedding.forward(pixel_values.to(patch_embedding.weight!.dtype)).flatten(2).transpose(1, 2);
        var cls = class_embedding.expand(b, 1, -1);
        var x = torch.cat([cls, patches], 1);
        // position_ids = arange(num_positions), a non-persistent buffer in HF.
        var positions = torch.arange(x.shape[1], dtype: ScalarType.Int64, device: x.device).unsqueeze(0);
        x = x + position_embedding.forward(positions);
        return x.MoveToOuterDisposeScope();
    }
}

public sealed class CLIPAttention : nn.Module<Tensor, Tensor>
{
    public nn.Module<Tensor, Tensor> q_proj;
    public nn.Module<Tensor, Tensor> k_proj;
    public nn.Module<Tensor, Tensor> v_proj;
    public nn.Module<Tensor, Tensor> out_proj;
    readonly int _heads;
    readonly double _dropout;

    public CLIPAttention(CLIPVisionConfig c) : base(nameof(CLIPAttention))
    {
        _heads = c.NumAttentionHeads;
        _dropout = c.AttentionDropout;
        q_proj = nn.Linear(c.HiddenSize, c.HiddenSize);
        k_proj = nn.Linear(c.HiddenSize, c.HiddenSize);
        v_proj = nn.Linear(c.HiddenSize, c.HiddenSize);
        out_proj = nn.Linear(c.HiddenSize, c.HiddenSize);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = torch.NewDisposeScope();
        long b = x.shape[0], n = x.shape[1], d = x.shape[2], hd = d / _heads;
        Tensor Heads(Tensor t) => t.view(b, n, _heads, hd).transpose(1, 2);
        var ctx = nn.functional.scaled_dot_product_attention(Heads(q_proj.call(x)), Heads(k_proj.call(x)), Heads(v_proj.call(x)),
            p: training ? _dropout : 0.0);
        ctx = ctx.transpose(1, 2).reshape(b, n, d);
        return out_proj.call(ctx).MoveToOuterDisposeScope();
    }
}

public sealed class CLIPMLP : nn.Module<Tensor, Tensor>
{
    public nn.Module<Tensor, Tensor> fc1;
    public nn.Module<Tensor, Tensor> fc2;
    readonly Func<Tensor, Tensor> _act;

    public CLIPMLP(CLIPVisionConfig c) : base(nameof(CLIPMLP))
    {
        fc1 = nn.Linear(c.HiddenSize, c.IntermediateSize);
        fc2 = nn.Linear(c.IntermediateSize, c.HiddenSize);
        _act = Activations.Get(c.HiddenAct);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = torch.NewDisposeScope();
        return fc2.call(_act(fc1.call(x))).MoveToOuterDisposeScope();
    }
}

public sealed class CLIPEncoderLayer : nn.Module<Tensor, Tensor>
{
    public CLIPAttention self_attn;
    public LayerNorm layer_norm1;
    public CLIPMLP mlp;
    public LayerNorm layer_norm2;

    public CLIPEncoderLayer(CLIPVisionConfig c) : base(nameof(CLIPEncoderLayer))
    {
        self_attn = new CLIPAttention(c);
        layer_norm1 = nn.LayerNorm(c.HiddenSize, eps: c.LayerNormEps);
        mlp = new CLIPMLP(c);
        layer_norm2 = nn.LayerNorm(c.HiddenSize, eps: c.LayerNormEps);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = torch.NewDisposeScope();
        x = x + self_attn.forward(layer_norm1.forward(x));
        x = x + mlp.forward(layer_norm2.forward(x));
        return x.MoveToOuterDisposeScope();
    }
}

/// <summary>Runs the layers and returns HF's hidden_states tuple: the input, then every layer's output
/// ([num_hidden_layers + 1] tensors; the last one is last_hidden_state).</summary>
public sealed class CLIPEncoder : nn.Module<Tensor, Tensor[]>, IGradientCheckpointing
{
    public bool GradientCheckpointing { get; set; }

    public ModuleList<CLIPEncoderLayer> layers;

    public CLIPEncoder(CLIPVisionConfig c) : base(nameof(CLIPEncoder))
    {
        layers = new ModuleList<CLIPEncoderLayer>(Enumerable.Range(0, c.NumHiddenLayers).Select(_ => new CLIPEncoderLayer(c)).ToArray());
        RegisterComponents();
    }

    /// <summary>All hidden states; when <paramref name="upToLayer"/> is given only the first that many layers run
    /// (LLaVA reads hidden_states[-2], so the last layer's work would be wasted).</summary>
    public Tensor[] Forward(Tensor x, int? upToLayer)
    {
        using var scope = torch.NewDisposeScope();
        var states = new List<Tensor> { x };
        int n = Math.Min(upToLayer ?? layers.Count, layers.Count);
        bool checkpoint = Checkpointing.Active(this);
        for (int i = 0; i < n; i++)
        {
            var layer = layers[i];
            x = checkpoint ? Checkpointing.Run(layer, t => layer.forward(t[0]!), x) : layer.forward(x);
            states.Add(x);
        }
        foreach (var s in states.Skip(1)) s.MoveToOuterDisposeScope();   // states[0] is the caller's input
        return states.ToArray();
    }

    public override Tensor[] forward(Tensor x) => Forward(x, null);
}

/// <summary>CLIP vision output. HiddenStates = HF's hidden_states (embeddings after pre_layrnorm, then each layer's
/// output); LastHiddenState = the last layer's output (before post_layernorm); PoolerOutput = post_layernorm(CLS).
/// When the encoder was stopped early, LastHiddenState / PoolerOutput are null.</summary>
public sealed record CLIPVisionOutput(Tensor[] HiddenStates, Tensor? LastHiddenState, Tensor? PoolerOutput);

public sealed class CLIPVisionTransformer : nn.Module<Tensor, CLIPVisionOutput>
{
    public CLIPVisionEmbeddings embeddings;
    public LayerNorm pre_layrnorm;
    public CLIPEncoder encoder;
    public LayerNorm post_layernorm;

    public CLIPVisionTransformer(CLIPVisionConfig c) : base(nameof(CLIPVisionTransformer))
    {
        embeddings = new CLIPVisionEmbeddings(c);
        pre_layrnorm = nn.LayerNorm(c.HiddenSize, eps: c.LayerNormEps);
        encoder = new CLIPEncoder(c);
        post_layernorm = nn.LayerNorm(c.HiddenSize, eps: c.LayerNormEps);
        RegisterComponents();
    }

    public CLIPVisionOutput Forward(Tensor pixel_values, int? upToLayer = null)
    {
        using var scope = torch.NewDisposeScope();
        var x = pre_layrnorm.forward(embeddings.forward(pixel_values));
        var states = encoder.Forward(x, upToLayer);
        bool complete = states.Length == encoder.layers.Count + 1;
        Tensor? last = complete ? states[^1] : null;
        Tensor? pooled = complete ? post_layernorm.forward(last![.., 0, ..]) : null;
        foreach (var s in states) s.MoveToOuterDisposeScope();
        return new CLIPVisionOutput(states, last, pooled?.MoveToOuterDisposeScope());
    }

    public override CLIPVisionOutput forward(Tensor pixel_values) => Forward(pixel_values);
}

/// <summary>HF's CLIPVisionModel: a wrapper whose only field is <c>vision_model</c> (so LLaVA's names are
/// vision_tower.vision_model.…).</summary>
public sealed class CLIPVisionModel : nn.Module<Tensor, CLIPVisionOutput>
{
    public CLIPVisionTransformer vision_model;

    public CLIPVisionModel(CLIPVisionConfig c) : base(nameof(CLIPVisionModel))
    {
        vision_model = new CLIPVisionTransformer(c);
        RegisterComponents();
    }

    public CLIPVisionOutput Forward(Tensor pixel_values, int? upToLayer = null) => vision_model.Forward(pixel_values, upToLayer);

    public override CLIPVisionOutput forward(Tensor pixel_values) => vision_model.Forward(pixel_values);
}
