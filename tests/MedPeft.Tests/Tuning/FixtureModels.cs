using MedPeft.Models;
using MedPeft.Models.Blip;
using MedPeft.Models.Llava;
using TorchSharp;
using static TorchSharp.torch;

namespace MedPeft.Tests.Tuning;

/// <summary>The golden fixture models (`hf/llava`, `hf/blip_vqa`) loaded strictly in eval mode, and the tensor
/// comparisons the adapter tests share.</summary>
static class FixtureModels
{
    public static LlavaForConditionalGeneration LoadLlava()
    {
        var model = new LlavaForConditionalGeneration(LlavaConfig.Load(Fixtures.Path("hf", "llava", "config.json")));
        Checkpoint.LoadSafetensors(model, Fixtures.Path("hf", "llava", "model.safetensors"));
        model.eval();
        return model;
    }

    public static BlipForQuestionAnswering LoadBlipVqa()
    {
        var model = new BlipForQuestionAnswering(BlipConfig.Load(Fixtures.Path("hf", "blip_vqa", "config.json")));
        Checkpoint.LoadSafetensors(model, Fixtures.Path("hf", "blip_vqa", "model.safetensors"));
        model.eval();
        return model;
    }

    /// <summary>The fixture's inputs.safetensors as a LLaVA forward input (with labels).</summary>
    public static LlavaInput Input(Dictionary<string, Tensor> x) => new(x["input_ids"], x["pixel_values"], x["attention_mask"], x["labels"]);

    /// <summary>Same shape and dtype, bit-identical values.</summary>
    public static bool Same(Tensor a, Tensor b) =>
        a.shape.SequenceEqual(b.shape) && a.dtype == b.dtype &&
        a.detach().cpu().contiguous().bytes.ToArray().AsSpan().SequenceEqual(b.detach().cpu().contiguous().bytes.ToArray());

    /// <summary>The rows of [B, T, V] logits where the attention mask is 1 (padding left out).</summary>
    public static Tensor Masked(Tensor t, Tensor mask) => t.detach().reshape(-1, t.shape[^1]).index_select(0, mask.reshape(-1).nonzero().squeeze(1));

    /// <summary>A few AdamW steps on <paramref name="loss"/> over the <paramref name="trainable"/> parameters: from
    /// <paramref name="gradFromStep"/> on every trainable tensor gets a gradient (none for those
    /// <paramref name="unused"/> names, which the loss does not reach), and afterwards every frozen tensor is bit-identical
    /// while every used trainable one moved.</summary>
    public static void AssertTrainsOnlyAdapters(nn.Module model, IReadOnlyList<(string name, TorchSharp.Modules.Parameter parameter)> trainable,
        Func<Tensor> loss, int steps, int gradFromStep = 0, Func<string, bool>? unused = null)
    {
        unused ??= _ => false;
        var before = model.named_parameters().ToDictionary(p => p.name, p => p.parameter.detach().clone());
        var opt = torch.optim.AdamW(trainable.Select(p => p.parameter).ToList(), lr: 1e-2);
        model.train();
        for (int step = 0; step < steps; step++)
        {
            opt.zero_grad();
            loss().backward();
            if (step >= gradFromStep)
                foreach (var (name, p) in trainable)
                {
                    double g = p.grad is null ? 0 : p.grad.abs().sum().item<float>();
                    if (unused(name)) Assert.True(g == 0, $"{name}: unexpected gradient");
                    else Assert.True(g > 0, $"{name}: no gradient");
                }
            opt.step();
        }
        foreach (var (name, p) in model.named_parameters())
            if (!p.requires_grad) Assert.True(Same(p, before[name]), $"base parameter {name} changed");
            else if (!unused(name)) Assert.False(Same(p, before[name]), $"{name} did not train");
    }
}
