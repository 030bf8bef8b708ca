using MedPeft.Models;
using MedPeft.Models.Blip;
using MedPeft.Tuning;

namespace MedPeft.Tests.Models;

/// <summary>Parameter names, shapes and counts of the BLIP presets, built on the meta device (no weights).</summary>
public class BlipArchitectureTests
{
    static BlipForQuestionAnswering Meta(BlipConfig c) => ModelUtils.OnMeta(() => new BlipForQuestionAnswering(c));

    static TrainableReport Report(BlipForQuestionAnswering m, string strategy) => TuningStrategy.Parse(strategy, TowerLayout.Blip).Apply(m);

    [Fact]
    public void MissBase_matches_the_papers_counts()
    {
        var m = Meta(BlipPresets.MissBase());
        var ln = Report(m, "ln");
        Assert.Equal(361_478_972, ln.Total);
        Assert.Equal(153_600, ln.Trainable);
        Assert.Equal([38_400L, 56_832L, 58_368L], ln.Towers.Select(t => t.Trainable));
        Assert.Equal([86_339_328L, 137_258_496L, 137_881_148L], ln.Towers.Select(t => t.Total));
        Assert.Equal(115_200, Report(m, "ln@text").Trainable);
        Assert.Equal(170_007_552, Report(m, "ffn").Trainable);
        Assert.Equal(141_742_080, Report(m, "attn").Trainable);
        Assert.Equal(361_478_972, Report(m, "full").Trainable);
        Assert.Equal(86_339_328 + 115_200, Report(m, "full@vision+ln@text").Trainable);
    }

    [Fact]
    public void Hf_blip_vqa_base_has_an_untied_decoder_head()
    {
        var m = Meta(BlipPresets.BlipVqaBase());
        Assert.Equal(384_672_572, Report(m, "full").Total);
        Assert.Equal(153_600, Report(m, "ln").Trainable);
    }

    [Fact]
    public void Ln_patterns_select_exactly_the_LayerNorm_modules()
    {
        var m = Meta(BlipPresets.MissBase());
        var byType = m.named_modules().Where(x => x.module is TorchSharp.Modules.LayerNorm)
            .SelectMany(x => new[] { x.name + ".weight", x.name + ".bias" }).OrderBy(n => n, StringComparer.Ordinal).ToList();
        var byName = Report(m, "ln").TrainableNames.OrderBy(n => n, StringComparer.Ordinal).ToList();
        Assert.Equal(byType, byName);
        Assert.Equal(2 * (25 + 37 + 38), byName.Count);
    }

    [Fact]
    public void Bias_strategy_trains_biases_only_and_counts_the_tied_bias_once()
    {
        var m = Meta(BlipPresets.MissBase());
        var r = Report(m, "bias");
        Assert.All(r.TrainableNames, n => Assert.EndsWith("bias", n));
        Assert.Contains("text_decoder.cls.predictions.bias", r.TrainableNames);
        Assert.DoesNotContain("text_decoder.cls.predictions.decoder.bias", r.TrainableNames);
    }

    [Fact]
    public void Unknown_strategy_or_tower_is_a_one_line_error()
    {
        var e = Assert.Throws<MedPeftException>(() => TuningStrategy.Parse("lnn", TowerLayout.Blip));
        Assert.Contains("unknown tuning method \"lnn\"", e.Message);
        e = Assert.Throws<MedPeftException>(() => TuningStrategy.Parse("ln@llm", TowerLayout.Blip));
        Assert.Contains("unknown tower \"llm\"", e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }
}
