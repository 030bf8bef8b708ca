using MedPeft.Models;
using MedPeft.Models.Blip;
using MedPeft.Training;
using MedPeft.Tuning;
using TorchSharp;
using static TorchSharp.torch;

namespace MedPeft.Tests.Training;

public class TrainerTests
{
    /// <summary>A tiny BLIP (the blip_vqa fixture's shape) and a fixed synthetic batch: answer token = f(image).</summary>
    static (BlipForQuestionAnswering Model, List<BlipVqaInput> Data) Setup(long seed)
    {
        TorchRuntime.Seed(seed);
        var config = BlipConfig.Load(Fixtures.Path("hf", "blip_vqa", "config.json"));
        config.TextConfig.TieWordEmbeddings = true;
        var model = new BlipForQuestionAnswering(config);
        BlipInit.Apply(model);
        var g = new Generator((ulong)seed);
        var data = new List<BlipVqaInput>();
        for (int i = 0; i < 4; i++)
        {
            var pixels = torch.randn([8, 3, 32, 32], generator: g);
            var question = torch.randint(5, 128, [8, 6], generator: g);
            var answerToken = (pixels.mean([1, 2, 3]) > 0).to(ScalarType.Int64) + 10;   // depends on the image
            var labels = torch.stack([torch.full(8, 1L), answerToken, torch.full(8, 3L)], 1);
            data.Add(new BlipVqaInput(pixels, question, torch.ones_like(question), Labels: labels));
        }
        return (model, data);
    }

    static TrainResult Train(BlipForQuestionAnswering model, List<BlipVqaInput> data, string strategy, double lr, int steps = 20) =>
        Trainer.Run(model, Enumerable.Range(0, data.Count).ToList(), idx => model.forward(data[idx[0]]).Loss!,
            new TrainOptions { MaxSteps = steps, BatchSize = 1, LearningRate = lr, WarmupRatio = 0, LogEvery = 1, Seed = 7 });

    [Fact]
    public void A_few_full_tuning_steps_lower_the_loss()
    {
        var (model, data) = Setup(1);
        TuningStrategy.Parse("full", TowerLayout.Blip).Apply(model);
        var r = Train(model, data, "full", 2e-3, steps: 40);
        Assert.True(r.LossCurve[^1].Loss < 0.7 * r.LossCurve[0].Loss, $"loss {r.LossCurve[0].Loss} → {r.LossCurve[^1].Loss}");
    }

    [Fact]
    public void Ln_tuning_changes_only_LayerNorm_parameters_and_lowers_the_loss()
    {
        var (model, data) = Setup(2);
        var report = TuningStrategy.Parse("ln", TowerLayout.Blip).Apply(model);
        var before = model.named_parameters().ToDictionary(p => p.name, p => p.parameter.detach().clone());
        var r = Train(model, data, "ln", 1e-2);
        Assert.True(r.LossCurve[^1].Loss < r.LossCurve[0].Loss, $"loss {r.LossCurve[0].Loss} → {r.LossCurve[^1].Loss}");
        var trainable = report.TrainableNames.ToHashSet();
        foreach (var (name, p) in model.named_parameters())
        {
            bool changed = !before[name].eq(p.detach()).all().item<bool>();
            Assert.True(changed == trainable.Contains(name), $"{name}: changed={changed}, trainable={trainable.Contains(name)}");
        }
    }

    [Fact]
    public void Same_seed_gives_the_same_losses()
    {
        var (m1, d1) = Setup(3);
        TuningStrategy.Parse("full", TowerLayout.Blip).Apply(m1);
        var r1 = Train(m1, d1, "full", 1e-3, steps: 5);
        var (m2, d2) = Setup(3);
        TuningStrategy.Parse("full", TowerLayout.Blip).Apply(m2);
        var r2 = Train(m2, d2, "full", 1e-3, steps: 5);
        Assert.Equal(r1.LossCurve.Select(p => p.Loss), r2.LossCurve.Select(p => p.Loss));
    }

    [Fact]
    public void Norms_and_biases_get_no_weight_decay()
    {
        var m = ModelUtils.OnMeta(() => new BlipForQuestionAnswering(BlipPresets.MissBase()));
        var noDecay = m.named_parameters().Where(p => Trainer.NoDecay(p.name, p.parameter)).Select(p => p.name).ToHashSet();
        Assert.Contains("vision_model.encoder.layers.0.layer_norm1.weight", noDecay);
        Assert.Contains("text_encoder.encoder.layer.0.attention.self.query.bias", noDecay);
        Assert.Contains("text_decoder.cls.predictions.transform.LayerNorm.weight", noDecay);
        Assert.DoesNotContain("text_encoder.encoder.layer.0.attention.self.query.weight", noDecay);
        Assert.DoesNotContain("vision_model.encoder.layers.0.mlp.fc1.weight", noDecay);
    }

    [Fact]
    public void Schedule_warms_up_linearly_then_decays_to_zero()
    {
        Assert.Equal(0.1, LearningRateSchedule.At(0, 100, 10, 1.0), 12);
        Assert.Equal(1.0, LearningRateSchedule.At(9, 100, 10, 1.0), 12);
        Assert.Equal(1.0, LearningRateSchedule.At(10, 100, 10, 1.0), 12);
        Assert.Equal(0.5, LearningRateSchedule.At(55, 100, 10, 1.0), 12);
        Assert.True(LearningRateSchedule.At(99, 100, 10, 1.0) < 0.001);
    }

    [Fact]
    public void A_strategy_that_trains_nothing_is_refused()
    {
        var (model, data) = Setup(4);
        foreach (var (_, p) in model.named_parameters()) p.requires_grad = false;
        var e = Assert.Throws<MedPeftException>(() => Train(model, data, "none", 1e-3, steps: 1));
        Assert.Contains("no trainable parameter", e.Message);
    }
}
