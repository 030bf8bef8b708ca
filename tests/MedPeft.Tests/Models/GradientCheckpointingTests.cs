using MedPeft.Models;
using MedPeft.Models.Blip;
using MedPeft.Models.Llava;
using MedPeft.Tests.Tuning;
using MedPeft.Tuning;
using TorchSharp;
using static TorchSharp.torch;

namespace MedPeft.Tests.Models;

/// <summary>Activation checkpointing recomputes each layer in backward: the gradients must be the ones of the plain
/// backward (fp32, ≤ 1e-6), dropout included (the generator state is replayed), for every layer stack (CLIP, Llama,
/// BLIP ViT, BLIP text encoder and decoder).</summary>
public class GradientCheckpointingTests
{
    static Dictionary<string, Tensor> Gradients(nn.Module model, Func<Tensor> loss, bool checkpoint, long seed)
    {
        Assert.True(Checkpointing.Enable(model, checkpoint) > 0);
        foreach (var p in model.parameters()) p.grad = null;
        model.train();
        TorchRuntime.Seed(seed);
        loss().backward();
        var grads = model.named_parameters().Where(p => p.parameter.requires_grad)
            .ToDictionary(p => p.name, p => p.parameter.grad?.detach().clone() ?? torch.zeros_like(p.parameter));
        Checkpointing.Enable(model, false);
        return grads;
    }

    static void AssertSameGradients(nn.Module model, Func<Tensor> loss, long seed = 5)
    {
        var plain = Gradients(model, loss, checkpoint: false, seed);
        long before = Checkpointing.Recomputations;
        var recomputed = Gradients(model, loss, checkpoint: true, seed);
        Assert.True(Checkpointing.Recomputations - before >= 2, "no layer was recomputed");
        Assert.NotEmpty(plain);
        Assert.Contains(plain.Values, g => g.abs().max().item<float>() > 0);
        foreach (var (name, g) in plain)
        {
            double diff = (g - recomputed[name]).abs().max().item<float>();
            Assert.True(diff <= 1e-6, $"{name}: |grad diff| {diff:E2}");
        }
    }

    [Theory]
    [InlineData("ln")]
    [InlineData("full")]
    [InlineData("lora@llm")]
    [InlineData("ia3@llm")]
    [InlineData("prompt@llm")]
    public void Llava_gradients_are_identical_with_checkpointing(string strategy)
    {
        using var model = FixtureModels.LoadLlava();
        TuningStrategy.Parse(strategy, TowerLayout.Llava).Apply(model);
        var x = Fixtures.Load("hf", "llava", "inputs.safetensors");
        AssertSameGradients(model, () => model.forward(FixtureModels.Input(x)).Loss!);
    }

    [Theory]
    [InlineData("ln")]
    [InlineData("full")]
    [InlineData("lora")]
    public void Blip_gradients_are_identical_with_checkpointing_and_dropout(string strategy)
    {
        var config = BlipConfig.Load(Fixtures.Path("hf", "blip_vqa", "config.json"));
        // Dropout everywhere it exists, so the recomputation must replay the random masks.
        config.TextConfig.HiddenDropoutProb = 0.1;
        config.TextConfig.AttentionProbsDropoutProb = 0.1;
        config.VisionConfig.AttentionDropout = 0.1;
        using var model = new BlipForQuestionAnswering(config);
        Checkpoint.LoadSafetensors(model, Fixtures.Path("hf", "blip_vqa", "model.safetensors"));
        TuningStrategy.Parse(strategy, TowerLayout.Blip).Apply(model);
        var x = Fixtures.Load("hf", "blip_vqa", "inputs.safetensors");
        var input = new BlipVqaInput(x["pixel_values"], x["input_ids"], x["attention_mask"], Labels: x["labels"]);
        AssertSameGradients(model, () => model.forward(input).Loss!);
        // Dropout really draws: two plain runs with different seeds differ.
        var a = Gradients(model, () => model.forward(input).Loss!, false, 1);
        var b = Gradients(model, () => model.forward(input).Loss!, false, 2);
        Assert.Contains(a.Keys, k => (a[k] - b[k]).abs().max().item<float>() > 1e-6);
    }

    [Fact]
    public void Prefix_tuning_with_checkpointing_is_refused_in_one_line()
    {
        using var model = FixtureModels.LoadLlava();
        TuningStrategy.Parse("prefix@llm", TowerLayout.Llava).Apply(model);
        Checkpointing.Enable(model);
        model.train();
        var x = Fixtures.Load("hf", "llava", "inputs.safetensors");
        var e = Assert.Throws<MedPeftException>(() => model.forward(FixtureModels.Input(x)));
        Assert.Contains("not supported yet", e.Message);
        Assert.DoesNotContain("\n", e.Message);
    }

    [Fact]
    public void Evaluation_and_no_grad_forward_do_not_checkpoint_and_give_the_same_logits()
    {
        using var model = FixtureModels.LoadLlava();
        var x = Fixtures.Load("hf", "llava", "inputs.safetensors");
        var plain = model.forward(FixtureModels.Input(x)).Logits.detach().clone();
        Checkpointing.Enable(model);
        model.train();   // dropout-free fixture: train-mode logits equal eval-mode ones
        var checkpointed = model.forward(FixtureModels.Input(x)).Logits.detach();
        Assert.True((plain - checkpointed).abs().max().item<float>() <= 1e-6);
    }
}
