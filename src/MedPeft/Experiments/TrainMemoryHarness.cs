using System.Diagnostics;
using MedPeft.Models;
using MedPeft.Models.Llava;
using MedPeft.Training;
using MedPeft.Tuning;
using TorchSharp;
using static TorchSharp.torch;

namespace MedPeft.Experiments;

public sealed record TrainMemoryResult(string Arch, string Strategy, string DType, bool GradientCheckpointing, int Batch, int SeqLen,
    long Trainable, long Total, double[] StepSeconds, long PeakMemoryBytes, long LoadedMemoryBytes, double FirstLoss, double LastLoss);

/// <summary>`medpeft bench train-memory`: the large-model path of `train` on a LLaVA preset or config folder with random
/// weights built directly in the dtype — the strategy, fp32 master weights for what trains, gradient checkpointing and
/// the Trainer's own step (<see cref="Trainer.Run{T}"/>) on one random batch (an image + <c>seqLen</c> text tokens, the
/// second half supervised). Reports per-step seconds and the process's peak resident memory (VmHWM) over build and
/// steps. A stand-in until `bench train` (issue 12 item 5) covers dtype and checkpointing.</summary>
public static class TrainMemoryHarness
{
    public static TrainMemoryResult Run(string arch, string strategy, string dtype, bool checkpointing, int batch, int seqLen, int steps, Device device, long seed)
    {
        var spec = Presets.Get(arch);
        if (spec.Family != ModelFamily.Llava) throw new MedPeftException($"--arch {arch}: bench train-memory builds LLaVA models only");
        if (seqLen < 4) throw new MedPeftException($"--seq-len {seqLen}: at least 4 tokens");
        var dt = Precision.Resolve(dtype, arch);
        PeakMemory.Reset();
        TorchRuntime.Seed(seed);
        using var model = (LlavaForConditionalGeneration)spec.Build(device, dt);
        var report = TuningStrategy.Parse(strategy, spec.Layout).Apply(model);
        long loaded = PeakMemory.Bytes();
        var c = model.Config;
        var ids = torch.randint(3, Math.Min(c.TextConfig.VocabSize, c.ImageTokenIndex), [batch, seqLen], device: device);
        ids[.., 1] = torch.tensor(c.ImageTokenIndex, device: device);   // one <image> per row
        var labels = ids.clone();
        labels[.., ..(seqLen / 2)] = torch.tensor(-100L, device: device);
        var pixels = torch.randn([batch, 3, c.VisionConfig.ImageSize, c.VisionConfig.ImageSize], device: device);
        var input = new LlavaInput(ids, pixels, torch.ones_like(ids), labels);
        var times = new List<double>();
        var clock = new Stopwatch();
        var result = Trainer.Run(model, Enumerable.Range(0, steps).ToList(), _ =>
            {
                if (clock.IsRunning) times.Add(clock.Elapsed.TotalSeconds);
                clock.Restart();
                return model.forward(input).Loss!;
            },
            new TrainOptions { MaxSteps = steps, BatchSize = 1, LearningRate = 1e-4, WarmupRatio = 0, LogEvery = 1, Seed = seed, GradientCheckpointing = checkpointing });
        times.Add(clock.Elapsed.TotalSeconds);   // the last step's time includes its optimizer update, as the others'
        long peak = Math.Max(loaded, PeakMemory.Bytes());
        return new TrainMemoryResult(spec.Name, strategy, Precision.Name(dt), checkpointing, batch, seqLen, report.Trainable, report.Total,
            times.ToArray(), peak, loaded, result.LossCurve[0].Loss, result.LossCurve[^1].Loss);
    }
}
