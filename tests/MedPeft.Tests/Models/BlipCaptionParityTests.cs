using MedPeft.Models;
using MedPeft.Models.Blip;
using TorchSharp;
using static TorchSharp.torch;

namespace MedPeft.Tests.Models;

/// <summary>BlipForConditionalGeneration against fixtures/hf/blip_caption (transformers 4.37.2 outputs).</summary>
public class BlipCaptionParityTests
{
    [Fact]
    public void Blip_caption_matches_hugging_face()
    {
        var config = BlipConfig.Load(Fixtures.Path("hf", "blip_caption", "config.json"));
        using var model = new BlipForConditionalGeneration(config);
        Checkpoint.LoadSafetensors(model, Fixtures.Path("hf", "blip_caption", "model.safetensors"));
        model.eval();
        var x = Fixtures.Load("hf", "blip_caption", "inputs.safetensors");
        var exp = Fixtures.Load("hf", "blip_caption", "expected.safetensors");

        var o = model.forward(new BlipCaptionInput(x["pixel_values"], x["input_ids"], x["attention_mask"], x["labels"]));
        Fixtures.AssertClose(exp["vision_last_hidden_state"], o.ImageEmbeds, "vision_last_hidden_state");
        Fixtures.AssertClose(exp["logits"], o.Logits, "logits");
        Fixtures.AssertClose(exp["loss"], o.Loss!, "loss");

        o.Loss!.backward();
        var grads = exp.Keys.Where(k => k.StartsWith("grad.")).ToList();
        Assert.Equal(26, grads.Count);
        var parameters = model.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        foreach (var g in grads) Fixtures.AssertClose(exp[g], parameters[g["grad.".Length..]].grad!, g);

        var gen = model.Generate(x["pixel_values"], new GenerationOptions(MaxNewTokens: 5), keepScores: true);
        var ids = torch.tensor(gen.Sequences.SelectMany(r => r).ToArray()).reshape(gen.Sequences.Length, -1);
        Fixtures.AssertClose(exp["generated_ids"], ids, "generated_ids");
        Fixtures.AssertClose(exp["generated_scores"], torch.stack(gen.Scores!), "generated_scores");
    }
}
