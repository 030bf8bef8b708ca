using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MedPeft.Models.Blip;

/// <summary>HF's BlipPreTrainedModel._init_weights, for models trained from scratch (the embedded benchmark):
/// N(0, initializer_range) for Linear/Conv/Embedding weights, zero biases, LayerNorm 1/0, truncated-normal class and
/// position embeddings with the vision initializer_range.</summary>
public static class BlipInit
{
    public static void Apply(BlipForQuestionAnswering model, Generator? generator = null)
    {
        var c = model.Config;
        using var noGrad = torch.no_grad();
        foreach (var (_, m) in model.named_modules())
        {
            switch (m)
            {
                case Linear l:
                    l.weight!.normal_(0, c.InitializerRange, generator);
                    l.bias?.zero_();
                    break;
                case Conv2d conv:
                    conv.weight!.normal_(0, c.InitializerRange, generator);
                    conv.bias?.zero_();
                    break;
                case SharedLinear head:
                    head.weight.normal_(0, c.InitializerRange, generator);
                    break;
                case TokenEmbedding e:
                    e.weight!.normal_(0, c.InitializerRange, generator);
                    break;
                case LayerNorm ln:
                    ln.weight!.fill_(1.0);
                    ln.bias!.zero_();
                    break;
                case BlipVisionEmbeddings ve:
                    nn.init.trunc_normal_(ve.class_embedding, 0, c.VisionConfig.InitializerRange, generator: generator);
                    nn.init.trunc_normal_(ve.position_embedding, 0, c.VisionConfig.InitializerRange, generator: generator);
                    break;
            }
        }
        model.text_decoder.cls.predictions.bias.zero_();
        // A tied LM head shares the embedding tensor, which the Embedding case has already initialised.
    }
}
