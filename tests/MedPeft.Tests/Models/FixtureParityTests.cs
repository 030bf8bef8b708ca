using MedPeft.Experiments;

namespace MedPeft.Tests.Models;

/// <summary>Every tensor of every golden fixture (transformers 4.37.2 / PEFT 0.11.1 outputs: forward tensors, losses,
/// norm and adapter gradients, greedy ids and scores) recomputed by MedPeft through <see cref="Parity"/> — the code
/// behind `medpeft parity` — within the fixtures' tolerance (1e-4 + 1e-4·|expected|, ids exact).</summary>
public class FixtureParityTests
{
    [Theory]
    [InlineData("blip_vqa", null, 49)]
    [InlineData("blip_caption", null, 31)]
    [InlineData("llava", null, 28)]
    [InlineData("llava", "llava_lora", 20)]
    [InlineData("llava", "llava_ln_tuning", 19)]
    public void Every_fixture_tensor_matches(string model, string? adapter, int tensors)
    {
        var dir = Fixtures.Path("hf", model);
        var expected = Fixtures.Path("hf", adapter ?? model, "expected.safetensors");
        var entries = Parity.Run(dir, Path.Combine(dir, "inputs.safetensors"), expected, adapter is null ? null : Fixtures.Path("hf", adapter));
        Assert.Equal(tensors, entries.Count);
        Assert.All(entries, e => Assert.True(e.Ok, $"{e.Name}: {e.Error ?? $"max |diff| {e.MaxAbsDiff:E3}"}"));
    }
}
