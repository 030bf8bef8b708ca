using System.Diagnostics;
using MedPeft.Models;
using MedPeft.Models.Blip;
using MedPeft.Models.Llava;
using TorchSharp;
using static TorchSharp.torch;

namespace MedPeft.Experiments;

public sealed record ForwardBenchmarkResult(string Arch, string DType, long Parameters, int Batch, int TextTokens,
    double BuildSeconds, double ForwardSeconds, long PeakMemoryBytes, long[] LogitsShape);

/// <summary>`medpeft bench forward`: builds a preset with random weights directly in the requested dtype (a 7B model
/// in bf16 never exists in fp32, so it fits in 24 GB), runs one no-grad forward pass on random inputs and reports
/// time and peak resident memory. Checks that the large-model path really runs on a given machine.</summary>
public static class ForwardBenchmark
{
    public static ForwardBenchmarkResult Run(string arch, string dtype, int batch, int textTokens, Device device, long seed)
    {
        var dt = dtype switch
        {
            "bf16" or "bfloat16" => ScalarType.BFloat16,
            "fp16" or "float16" => ScalarType.Float16,
            "fp32" or "float32" => ScalarType.Float32,
            _ => throw new MedPeftException($"--dtype {dtype}: expected bf16, fp16 or fp32"),
        };
        var spec = Presets.Get(arch);
        PeakMemory.Reset();
        TorchRuntime.Seed(seed);
        var clock = Stopwatch.StartNew();
        var previous = torch.get_default_dtype();
        torch.set_default_dtype(dt);
        nn.Module model;
        try { model = spec.Build(device); }
        finally { torch.set_default_dtype(previous); }
        model.eval();
        double build = clock.Elapsed.TotalSeconds;
        long parameters = ModelUtils.UniqueParameters(model).Sum(p => p.Param.numel());

        clock.Restart();
        Tensor logits;
        using (torch.no_grad())
        using (var scope = torch.NewDisposeScope())
        {
            switch (model)
            {
                case LlavaForConditionalGeneration llava:
                {
                    var c = llava.Config;
                    var ids = torch.randint(3, Math.Min(c.TextConfig.VocabSize, c.ImageTokenIndex), [batch, textTokens], device: device);
                    ids[.., 1] = torch.tensor(c.ImageTokenIndex, device: device);   // one <image> token per row
                    var pixels = torch.randn([batch, 3, c.VisionConfig.ImageSize, c.VisionConfig.ImageSize], dtype: dt, device: device);
                    logits = llava.forward(new LlavaInput(ids, pixels, torch.ones_like(ids))).Logits.MoveToOuterDisposeScope();
                    break;
                }
                case BlipForQuestionAnswering blip:
                {
                    var c = blip.Config;
                    var ids = torch.randint(3, c.TextConfig.VocabSize, [batch, textTokens], device: device);
                    var pixels = torch.randn([batch, 3, c.VisionConfig.ImageSize, c.VisionConfig.ImageSize], dtype: dt, device: device);
                    logits = blip.forward(new BlipVqaInput(pixels, ids, DecoderInputIds: ids[.., ..4])).DecoderLogits.MoveToOuterDisposeScope();
                    break;
                }
                default:
                    throw new MedPeftException($"--arch {arch}: no forward benchmark for {model.GetType().Name}");
            }
        }
        double forward = clock.Elapsed.TotalSeconds;
        var result = new ForwardBenchmarkResult(arch, dtype, parameters, batch, textTokens, build, forward, PeakMemory.Bytes(), logits.shape);
        logits.Dispose();
        model.Dispose();
        return result;
    }
}
