using MedPeft.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace MedPeft.Tests;

/// <summary>Locates the golden fixtures copied into the test output and compares tensors with their tolerance
/// (fixtures/hf/README.md: |actual − expected| ≤ 1e-4 + 1e-4·|expected|; integer tensors exactly).</summary>
public static class Fixtures
{
    public static string Path(params string[] parts) => System.IO.Path.Combine([AppContext.BaseDirectory, "fixtures", .. parts]);

    public static Dictionary<string, Tensor> Load(params string[] parts) => Checkpoint.ReadSafetensors(Path(parts));

    public static void AssertClose(Tensor expected, Tensor actual, string name, double atol = 1e-4, double rtol = 1e-4)
    {
        Assert.True(expected.shape.SequenceEqual(actual.shape), $"{name}: shape [{string.Join(",", actual.shape)}] != expected [{string.Join(",", expected.shape)}]");
        if (expected.dtype == ScalarType.Int64)
        {
            Assert.True(expected.eq(actual.to(ScalarType.Int64)).all().item<bool>(), $"{name}: integer tensors differ");
            return;
        }
        var e = expected.to(ScalarType.Float64); var a = actual.detach().to(ScalarType.Float64);
        var excess = ((a - e).abs() - (atol + rtol * e.abs())).max().item<double>();
        var maxAbs = (a - e).abs().max().item<double>();
        Assert.True(excess <= 0, $"{name}: max |diff| {maxAbs:E3} exceeds tolerance");
    }
}
