using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MedPeft.Models.Blip;

// The BLIP text towers (HF modeling_blip_text.py): a BERT whose every layer has self-attention, cross-attention to
// an encoder's states, and a feed-forward block. Used bidirectionally as the question encoder (text_encoder.*) and
// causally as the answer decoder (text_decoder.bert.* + text_decoder.cls.*). Field names are HF's.

/// <summary>What a BLIP text tower reads. Masks are 0/1 (long or float); <c>IsDecoder</c> adds the causal mask.</summary>
public sealed record BlipTextInput(
    Tensor? InputIds,
    Tensor? AttentionMask = null,
    Tensor? EncoderHiddenStates = null,
    Tensor? EncoderAttentionMask = null,
    bool IsDecoder = false,
    Tensor? InputsEmbeds = null);

public sealed class BlipTextEmbeddings : nn.Module<Tensor?, Tensor?, Tensor>
{
    public TokenEmbedding word_embeddings;
    public TokenEmbedding position_embeddings;
    public LayerNorm LayerNorm;
    readonly double _dropout;

    /// <summary>Prefix tuning: HF offsets BERT position ids by past_key_values length (the virtual tokens).</summary>
    public long PastLength { get; set; }
    /// <summary>Prompt tuning: soft tokens prepended to the input embeddings (before positions and LayerNorm, as PEFT
    /// prepends to inputs_embeds).</summary>
    public IInputPrompt? Prompt { get; set; }

    public BlipTextEmbeddings(BlipTextConfig c) : base(nameof(BlipTextEmbeddings))
    {
        word_embeddings = new TokenEmbedding(c.VocabSize, c.HiddenSize, paddingIdx: c.PadTokenId);
        position_embeddings = new TokenEmbedding(c.MaxPositionEmbeddings, c.HiddenSize);
        LayerNorm = nn.LayerNorm(c.HiddenSize, eps: c.LayerNormEps);
        _dropout = c.HiddenDropoutProb;
        RegisterComponents();
    }

    public override Tensor forward(Tensor? input_ids, Tensor? inputs_embeds)
    {
        using var scope = torch.NewDisposeScope();
        var x = inputs_embeds ?? word_embeddings.forward(input_ids!);
        if (Prompt is not null) x = torch.cat([Prompt.Embeddings(x.shape[0], x.dtype), x], 1);
        var positions = (torch.arange(x.shape[1], dtype: ScalarType.Int64, device: x.device) + PastLength).unsqueeze(0);
        x = LayerNorm.forward(x + position_embeddings.forward(positions));
        return nn.functional.dropout(x, _dropout, training).MoveToOuterDisposeScope();
    }
}

public sealed class BlipTextSelfAttention : nn.Module<Tensor, Tensor?, Tensor?, Tensor>
{
    public nn.Module<Tensor, Tensor> query;
    public nn.Module<Tensor, Tensor> key;
    public nn.Module<Tensor, Tensor> value;
    readonly int _heads, _hidden;
    readonly double _dropout;

    /// <summary>Prefix tuning's virtual keys/values; used in self-attention only (never with encoder states).</summary>
    public IAttentionPrefix? Prefix { get; set; }
    public int GetHeads() => _heads;
    /// <summary>The attention width (query output size).</summary>
    public int HiddenSize => _hidden;

    public BlipTextSelfAttention(BlipTextConfig c, bool isCrossAttention) : base(nameof(BlipTextSelfAttention))
    {
        _heads = c.NumAttentionHeads;
        _hidden = c.HiddenSize;
        _dropout = c.AttentionProbsDropoutProb;
        int kvIn = isCrossAttention ? c.EncoderHiddenSize : c.HiddenSize;
        query = nn.Linear(c.HiddenSize, c.HiddenSize);
        key = nn.Linear(kvIn, c.HiddenSize);
        value = nn.Linear(kvIn, c.HiddenSize);
        RegisterComponents();
    }

    /// <param name="additiveMask">Broadcastable to [B, heads, Lq, Lk]; 0 where attended, large negative elsewhere.</param>
    /// <param name="encoderHiddenStates">Keys/values come from here when given (cross-attention).</param>
    public override Tensor forward(Tensor hidden, Tensor? additiveMask, Tensor? encoderHiddenStates)
    {
        using var scope = torch.NewDisposeScope();
        long b = hidden.shape[0], d = _hidden, hd = d / _heads;
        var kvSource = encoderHiddenStates ?? hidden;
        Tensor Heads(Tensor t) => t.view(b, -1, _heads, hd).transpose(1, 2);
        var q = Heads(query.call(hidden));
        var k = Heads(key.call(kvSource));
        var v = Heads(value.call(kvSource));
        if (Prefix is not null && encoderHiddenStates is null) (k, v, additiveMask) = AttentionPrefixOps.Prepend(Prefix, k, v, additiveMask);
        var ctx = nn.functional.scaled_dot_product_attention(q, k, v, additiveMask, p: training ? _dropout : 0.0);
        return ctx.transpose(1, 2).reshape(b, -1, d).MoveToOuterDisposeScope();
    }
}

/// <summary>dense → dropout → LayerNorm(x + residual): BERT's post-norm residual block.</summary>
public sealed class BlipTextSelfOutput : nn.Module<Tensor, Tensor, Tensor>
{
    public nn.Module<Tensor, Tensor> dense;
    public LayerNorm LayerNorm;
    readonly double _dropout;

    public BlipTextSelfOutput(BlipTextConfig c, int inFeatures) : base(nameof(BlipTextSelfOutput))
    {
        dense = nn.Linear(inFeatures, c.HiddenSize);
        LayerNorm = nn.LayerNorm(c.HiddenSize, eps: c.LayerNormEps);
        _dropout = c.HiddenDropoutProb;
        RegisterComponents();
    }

    public override Tensor forward(Tensor hidden, Tensor residual)
    {
        using var scope = torch.NewDisposeScope();
        var x = nn.functional.dropout(dense.call(hidden), _dropout, training);
        return LayerNorm.forward(x + residual).MoveToOuterDisposeScope();
    }
}

public sealed class BlipTextAttention : nn.Module<Tensor, Tensor?, Tensor?, Tensor>
{
    public BlipTextSelfAttention self;
    public BlipTextSelfOutput output;

    public BlipTextAttention(BlipTextConfig c, bool isCrossAttention) : base(nameof(BlipTextAttention))
    {
        self = new BlipTextSelfAttention(c, isCrossAttention);
        output = new BlipTextSelfOutput(c, c.HiddenSize);
        RegisterComponents();
    }

    public override Tensor forward(Tensor hidden, Tensor? additiveMask, Tensor? encoderHiddenStates)
    {
        using var scope = torch.NewDisposeScope();
        return output.forward(self.forward(hidden, additiveMask, encoderHiddenStates), hidden).MoveToOuterDisposeScope();
    }
}

public sealed class BlipTextIntermediate : nn.Module<Tensor, Tensor>
{
    public nn.Module<Tensor, Tensor> dense;
    readonly Func<Tensor, Tensor> _act;

    public BlipTextIntermediate(BlipTextConfig c) : base(nameof(BlipTextIntermediate))
    {
        dense = nn.Linear(c.HiddenSize, c.IntermediateSize);
        _act = Activations.Get(c.HiddenAct);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = torch.NewDisposeScope();
        return _act(dense.call(x)).MoveToOuterDisposeScope();
    }
}

/// <summary>Masks prepared once per tower call and shared by every layer.</summary>
public sealed record BlipLayerMasks(Tensor? SelfMask, Tensor? CrossMask);

public sealed class BlipTextLayer : nn.Module<Tensor, Tensor?, BlipLayerMasks, Tensor>
{
    public BlipTextAttention attention;
    public BlipTextAttention crossattention;
    public BlipTextIntermediate intermediate;
    public BlipTextSelfOutput output;

    public BlipTextLayer(BlipTextConfig c) : base(nameof(BlipTextLayer))
    {
        attention = new BlipTextAttention(c, isCrossAttention: false);
        crossattention = new BlipTextAttention(c, isCrossAttention: true);
        intermediate = new BlipTextIntermediate(c);
        output = new BlipTextSelfOutput(c, c.IntermediateSize);
        RegisterComponents();
    }

    public override Tensor forward(Tensor hidden, Tensor? encoderHiddenStates, BlipLayerMasks masks)
    {
        using var scope = torch.NewDisposeScope();
        var x = attention.forward(hidden, masks.SelfMask, null);
        if (encoderHiddenStates is not null) x = crossattention.forward(x, masks.CrossMask, encoderHiddenStates);
        return output.forward(intermediate.forward(x), x).MoveToOuterDisposeScope();
    }
}

public sealed class BlipTextEncoder : nn.Module<Tensor, Tensor?, BlipLayerMasks, Tensor>, IGradientCheckpointing
{
    public bool GradientCheckpointing { get; set; }

    public ModuleList<BlipTextLayer> layer;

    public BlipTextEncoder(BlipTextConfig c) : base(nameof(BlipTextEncoder))
    {
        layer = new ModuleList<BlipTextLayer>(Enumerable.Range(0, c.NumHiddenLayers).Select(_ => new BlipTextLayer(c)).ToArray());
        RegisterComponents();
    }

    public override Tensor forward(Tensor hidden, Tensor? encoderHiddenStates, BlipLayerMasks masks)
    {
        using var scope = torch.NewDisposeScope();
        bool checkpoint = Checkpointing.Active(this);
        foreach (var l in layer)
        {
            if (!checkpoint) { hidden = l.forward(hidden, encoderHiddenStates, masks); continue; }
            Checkpointing.RefusePrefix(l.attention.self.Prefix);
            hidden = Checkpointing.Run(l, t => l.forward(t[0]!, t[1], new BlipLayerMasks(t[2], t[3])),
                hidden, encoderHiddenStates, masks.SelfMask, masks.CrossMask);
        }
        return hidden.MoveToOuterDisposeScope();
    }
}

/// <summary>BlipTextModel without pooler (add_pooling_layer=False, as both BLIP VQA towers are built).</summary>
public sealed class BlipTextModel : nn.Module<BlipTextInput, Tensor>
{
    public BlipTextEmbeddings embeddings;
    public BlipTextEncoder encoder;

    public BlipTextModel(BlipTextConfig c) : base(nameof(BlipTextModel))
    {
        embeddings = new BlipTextEmbeddings(c);
        encoder = new BlipTextEncoder(c);
        RegisterComponents();
    }

    public override Tensor forward(BlipTextInput input)
    {
        using var scope = torch.NewDisposeScope();
        var x = embeddings.forward(input.InputIds, input.InputsEmbeds);
        long b = x.shape[0], n = x.shape[1];
        long prompt = n - (input.InputIds ?? input.InputsEmbeds)!.shape[1];   // soft prompt tokens (prompt tuning)
        var mask = input.AttentionMask ?? torch.ones(b, n, device: x.device);
        if (prompt > 0 && mask.shape[1] < n) mask = torch.cat([torch.ones(b, prompt, dtype: mask.dtype, device: mask.device), mask], 1);
        var masks = new BlipLayerMasks(
            SelfAttentionMask(mask, input.IsDecoder, x.dtype),
            input.EncoderHiddenStates is null ? null
                : CrossAttentionMask(WithPromptColumns(input.EncoderAttentionMask, input.EncoderHiddenStates), x.dtype));
        var h = encoder.forward(x, input.EncoderHiddenStates, masks);
        // A decoder's outputs for its soft prompt are dropped (as labels −100 on virtual tokens); an encoder keeps them
        // so the decoder cross-attends to them, as PEFT's encoder outputs include the virtual tokens.
        if (prompt > 0 && input.IsDecoder) h = h[.., (int)prompt.., ..];
        return h.MoveToOuterDisposeScope();
    }

    /// <summary>The encoder states' 0/1 mask; states longer than their mask start with an encoder's soft prompt tokens,
    /// which are attended (PEFT extends the mask with ones for them).</summary>
    static Tensor WithPromptColumns(Tensor? mask, Tensor states)
    {
        long b = states.shape[0], n = states.shape[1];
        if (mask is null) return torch.ones(b, n, device: states.device);
        if (mask.shape[1] >= n) return mask;
        return torch.cat([torch.ones(b, n - mask.shape[1], dtype: mask.dtype, device: mask.device), mask], 1);
    }

    /// <summary>HF's get_extended_attention_mask: (1 − mask) · −10000, with a causal triangle for the decoder.</summary>
    internal static Tensor SelfAttentionMask(Tensor mask, bool causal, ScalarType dtype)
    {
        var m = mask.to(dtype);
        Tensor ext;
        if (causal)
        {
            long n = m.shape[1];
            var tri = torch.ones(n, n, dtype: dtype, device: m.device).tril();
            ext = tri.unsqueeze(0).unsqueeze(0) * m.unsqueeze(1).unsqueeze(1);       // [B,1,N,N]
        }
        else ext = m.unsqueeze(1).unsqueeze(1);                                     // [B,1,1,N]
        return (1.0 - ext) * -10000.0;
    }

    /// <summary>HF's invert_attention_mask for cross-attention: (1 − mask) · finfo(dtype).min.</summary>
    internal static Tensor CrossAttentionMask(Tensor mask, ScalarType dtype)
    {
        var m = mask.to(dtype).unsqueeze(1).unsqueeze(1);
        return (1.0 - m) * torch.finfo(dtype).min;
    }
}

public sealed class BlipTextPredictionHeadTransform : nn.Module<Tensor, Tensor>
{
    public nn.Module<Tensor, Tensor> dense;
    public LayerNorm LayerNorm;
    readonly Func<Tensor, Tensor> _act;

    public BlipTextPredictionHeadTransform(BlipTextConfig c) : base(nameof(BlipTextPredictionHeadTransform))
    {
        dense = nn.Linear(c.HiddenSize, c.HiddenSize);
        LayerNorm = nn.LayerNorm(c.HiddenSize, eps: c.LayerNormEps);
        _act = Activations.Get(c.HiddenAct);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = torch.NewDisposeScope();
        return LayerNorm.forward(_act(dense.call(x))).MoveToOuterDisposeScope();
    }
}

public sealed class BlipTextLMPredictionHead : nn.Module<Tensor, Tensor>
{
    public BlipTextPredictionHeadTransform transform;
    public SharedLinear decoder;
    public Parameter bias;

    /// <param name="tiedWeight">The word-embedding matrix when the head is tied to it; null for an own weight.</param>
    public BlipTextLMPredictionHead(BlipTextConfig c, Parameter? tiedWeight) : base(nameof(BlipTextLMPredictionHead))
    {
        transform = new BlipTextPredictionHeadTransform(c);
        bias = new Parameter(torch.zeros(c.VocabSize));
        // HF ties decoder.bias to the head's bias: one tensor under two names.
        decoder = new SharedLinear(tiedWeight ?? new Parameter(torch.empty(c.VocabSize, c.HiddenSize)), bias);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = torch.NewDisposeScope();
        return decoder.call(transform.forward(x)).MoveToOuterDisposeScope();
    }
}

public sealed class BlipTextOnlyMLMHead : nn.Module<Tensor, Tensor>
{
    public BlipTextLMPredictionHead predictions;

    public BlipTextOnlyMLMHead(BlipTextConfig c, Parameter? tiedWeight) : base(nameof(BlipTextOnlyMLMHead))
    {
        predictions = new BlipTextLMPredictionHead(c, tiedWeight);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) => predictions.forward(x);
}

/// <summary>The causal answer/report decoder: bert (with cross-attention) + MLM-style LM head. Returns logits.</summary>
public sealed class BlipTextLMHeadModel : nn.Module<BlipTextInput, Tensor>
{
    public BlipTextModel bert;
    public BlipTextOnlyMLMHead cls;
    public double LabelSmoothing { get; }

    public BlipTextLMHeadModel(BlipTextConfig c) : base(nameof(BlipTextLMHeadModel))
    {
        bert = new BlipTextModel(c);
        cls = new BlipTextOnlyMLMHead(c, c.TieWordEmbeddings ? bert.embeddings.word_embeddings.weight : null);
        LabelSmoothing = c.LabelSmoothing;
        RegisterComponents();
    }

    public override Tensor forward(BlipTextInput input)
    {
        using var scope = torch.NewDisposeScope();
        return cls.forward(bert.forward(input with { IsDecoder = true })).MoveToOuterDisposeScope();
    }

    /// <summary>HF's LM loss: logits[:, :-1] against labels[:, 1:], cross-entropy with label smoothing, mean over
    /// targets that are not −100. Computed in fp32 whatever the model's dtype (as torch.autocast runs cross_entropy;
    /// HF's BLIP itself does not upcast), so a 16-bit model's loss is not rounded to 16 bits.</summary>
    public Tensor Loss(Tensor logits, Tensor labels)
    {
        using var scope = torch.NewDisposeScope();
        long v = logits.shape[2];
        var shifted = logits[.., ..^1, ..].reshape(-1, v).to(ScalarType.Float32);
        var targets = labels[.., 1..].reshape(-1);
        return nn.functional.cross_entropy(shifted, targets, ignore_index: -100, label_smoothing: LabelSmoothing).MoveToOuterDisposeScope();
    }
}
