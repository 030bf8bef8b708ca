using MedPeft.Models;
using MedPeft.Models.Blip;
using TorchSharp;
using static TorchSharp.torch;

namespace MedPeft.Tests.Models;

/// <summary>BlipForQuestionAnswering against fixtures/hf/blip_vqa (transformers 4.37.2 outputs).</summary>
public class BlipParityTests
{
    [Fact]
    public void Blip_vqa_matches_hugging_face()
    {
        torch.set_num_threads(2);
        var config = BlipConfig.Load(Fixtures.Path("hf", "blip_vqa", "config.json"));
        using var model = new BlipForQuestionAnswering(config);
        Checkpoint.LoadSafetensors(model, Fixtures.Path("hf", "blip_vqa", "model.safetensors"));
        model.eval();
        var x = Fixtures.Load("hf", "blip_vqa", "inputs.safetensors");
        var exp = Fixtures.Load("hf", "blip_vqa", "expected.safetensors");

        var o = model.forward(new BlipVqaInput(x["pixel_values"], x["input_ids"], x["attention_mask"], Labels: x["labels"]));
        Fixtures.AssertClose(exp["vision_last_hidden_state"], o.ImageEmbeds, "vision_last_hidden_state");
        Fixtures.AssertClose(exp["vision_pooler_output"], o.VisionPoolerOutput, "vision_pooler_output");
        Fixtures.AssertClose(exp["text_encoder_last_hidden_state"], o.QuestionEmbeds, "text_encoder_last_hidden_state");
        Fixtures.AssertClose(exp["decoder_logits"], o.DecoderLogits, "decoder_logits");
        Fixtures.AssertClose(exp["loss"], o.Loss!, "loss");

        o.Loss!.backward();
        var grads = exp.Keys.Where(k => k.StartsWith("grad.")).ToList();
        Assert.Equal(40, grads.Count);
        var parameters = model.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        foreach (var g in grads) Fixtures.AssertClose(exp[g], parameters[g["grad.".Length..]].grad!, g);

        using (torch.no_grad())
        {
            var masked = model.forward(new BlipVqaInput(x["pixel_values"], x["input_ids"], x["attention_mask"],
                x["decoder_input_ids"], x["decoder_attention_mask"], x["labels_masked"]));
            Fixtures.AssertClose(exp["decoder_logits_masked"], masked.DecoderLogits, "decoder_logits_masked");
            Fixtures.AssertClose(exp["loss_masked"], masked.Loss!, "loss_masked");
        }

        var gen = model.Generate(x["pixel_values"], x["input_ids"], x["attention_mask"], new GenerationOptions(MaxNewTokens: 5), keepScores: true);
        var ids = torch.tensor(gen.Sequences.SelectMany(r => r).ToArray()).reshape(gen.Sequences.Length, -1);
        Fixtures.AssertClose(exp["generated_ids"], ids, "generated_ids");
        Fixtures.AssertClose(exp["generated_scores"], torch.stack(gen.Scores!), "generated_scores");
    }
}
