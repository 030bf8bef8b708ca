using System.Text.Json;
using TorchSharp;
using static TorchSharp.torch;

namespace MedPeft;

/// <summary>The weight dtype a model runs in (<c>--dtype auto|bf16|fp16|fp32</c>, a study model's <c>dtype:</c>).
/// <c>auto</c> is the checkpoint's own 16-bit dtype (config.json <c>torch_dtype</c>, else the first floating tensor
/// of its safetensors, as transformers' torch_dtype="auto" decides), else fp32. Frozen weights are created and loaded
/// in this dtype; trainable ones get fp32 master copies in the trainer (<see cref="Training.MasterWeights"/>).</summary>
public static class Precision
{
    public static readonly IReadOnlyList<string> Names = ["auto", "bf16", "fp16", "fp32"];

    /// <summary>A dtype name (bf16/bfloat16, fp16/float16, fp32/float32) or null for "auto"; anything else is a
    /// one-line error naming <paramref name="option"/>.</summary>
    public static ScalarType? Parse(string spec, string option = "--dtype") => spec.Trim().ToLowerInvariant() switch
    {
        "auto" => null,
        "bf16" or "bfloat16" => ScalarType.BFloat16,
        "fp16" or "float16" or "half" => ScalarType.Float16,
        "fp32" or "float32" or "float" => ScalarType.Float32,
        _ => throw new MedPeftException($"{option} {spec}: expected {string.Join(", ", Names)}"),
    };

    /// <summary>Resolves <paramref name="spec"/> for a checkpoint folder (or a preset: <paramref name="dirOrPreset"/>
    /// not a folder ⇒ auto means fp32, since random weights have no stored dtype).</summary>
    public static ScalarType Resolve(string spec, string? dirOrPreset, string option = "--dtype") =>
        Parse(spec, option) ?? (dirOrPreset is not null && Directory.Exists(dirOrPreset) && StoredDtype(dirOrPreset) is { } d && Is16Bit(d) ? d : ScalarType.Float32);

    public static bool Is16Bit(ScalarType t) => t is ScalarType.BFloat16 or ScalarType.Float16;

    public static string Name(ScalarType t) => t switch
    {
        ScalarType.BFloat16 => "bf16",
        ScalarType.Float16 => "fp16",
        ScalarType.Float32 => "fp32",
        _ => t.ToString(),
    };

    /// <summary>The dtype a checkpoint folder says it holds: config.json's torch_dtype, else the dtype of the first
    /// floating tensor in its (first) safetensors file; null when neither says.</summary>
    public static ScalarType? StoredDtype(string dir)
    {
        var config = Path.Combine(dir, "config.json");
        if (File.Exists(config))
        {
            try
            {
                using var doc = JsonDocument.Parse(File.ReadAllText(config));
                if (doc.RootElement.ValueKind == JsonValueKind.Object && doc.RootElement.TryGetProperty("torch_dtype", out var td) && td.ValueKind == JsonValueKind.String)
                    return td.GetString() switch
                    {
                        "bfloat16" => ScalarType.BFloat16,
                        "float16" => ScalarType.Float16,
                        "float32" => ScalarType.Float32,
                        _ => null,
                    };
            }
            catch (JsonException) { /* config.json errors are reported by the config reader */ }
        }
        var shard = Models.CheckpointFiles.WeightFiles(dir).FirstOrDefault(Models.CheckpointFiles.IsSafetensors);
        if (shard is null) return null;
        return Models.CheckpointFiles.ReadSafetensorsHeader(shard).Entries
            .Select(e => (ScalarType?)e.DType).FirstOrDefault(t => t is ScalarType.Float32 or ScalarType.BFloat16 or ScalarType.Float16);
    }

    /// <summary>Runs <paramref name="build"/> with <paramref name="dtype"/> as libtorch's default floating dtype, so a
    /// module's parameters are created directly in it (a 7B model in bf16 never exists in fp32).</summary>
    public static T WithDefault<T>(ScalarType dtype, Func<T> build)
    {
        var previous = torch.get_default_dtype();
        torch.set_default_dtype(dtype);
        try { return build(); }
        finally { torch.set_default_dtype(previous); }
    }
}
