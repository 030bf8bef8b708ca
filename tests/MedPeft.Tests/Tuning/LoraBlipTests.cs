using MedPeft.Models;
using MedPeft.Models.Blip;
using MedPeft.Tuning;
using TorchSharp;
using static TorchSharp.torch;

namespace MedPeft.Tests.Tuning;

/// <summary>LoRA on BLIP (MILE's default: query/value of the BERT self- and cross-attention in both text towers).</summary>
public class LoraBlipTests
{
    [Fact]
    public void Lora_on_blip_base_meta_counts_query_value_adapters()
    {
        using var m = ModelUtils.OnMeta(() => new BlipForQuestionAnswering(BlipPresets.MissBase()));
        var report = TuningStrategy.Parse("lora", TowerLayout.Blip).Apply(m);
        // 12 layers × (self + cross) × (query + value) × 2 text towers = 96 Linear 768→768, r 8: 8·768·2 each.
        Assert.Equal(96L * 8 * 768 * 2, report.Trainable);
        Assert.Equal(0L, report.Towers.Single(t => t.Tower == "vision").Trainable);
        Assert.All(report.TrainableNames, n => Assert.Matches(@"\.(query|value)\.lora_[AB]\.weight$", n));
        Assert.Equal(48L * 8 * 768 * 2, TuningStrategy.Parse("lora@text_decoder", TowerLayout.Blip).Apply(
            ModelUtils.OnMeta(() => new BlipForQuestionAnswering(BlipPresets.MissBase()))).Trainable);
    }

    [Fact]
    public void Lora_on_blip_caption_is_exact_at_init_and_active_after()
    {
        var config = BlipConfig.Load(Fixtures.Path("hf", "blip_caption", "config.json"));
        using var model = new BlipForConditionalGeneration(config);
        Checkpoint.LoadSafetensors(model, Fixtures.Path("hf", "blip_caption", "model.safetensors"));
        model.eval();
        var x = Fixtures.Load("hf", "blip_caption", "inputs.safetensors");
        BlipCaptionInput Input() => new(x["pixel_values"], x["input_ids"], x["attention_mask"], x["labels"]);
        using var _ = torch.no_grad();
        var before = model.forward(Input()).Logits.clone();
        TuningStrategy.Parse("lora@text", TowerLayout.Blip).Apply(model);
        var layers = Lora.LayersOf(model);
        Assert.NotEmpty(layers);
        var zeroB = model.forward(Input()).Logits;
        Assert.True(before.eq(zeroB).all().item<bool>(), "B = 0 leaves the output bit-identical");
        foreach (var l in layers) l.B.weight!.normal_(0, 0.1);
        var active = model.forward(Input()).Logits;
        Assert.True((active - before).abs().max().item<float>() > 1e-3);
        Lora.Merge(model);
        Fixtures.AssertClose(active, model.forward(Input()).Logits, "merged", atol: 2e-5, rtol: 1e-5);
    }
}
