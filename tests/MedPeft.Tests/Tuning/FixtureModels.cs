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
}
