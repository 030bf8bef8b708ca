using System.CommandLine;

namespace MedPeft.Cli;

/// <summary>Options every compute command shares: device, threads, seed.</summary>
sealed class RuntimeOptions
{
    public readonly Option<string> Device = new("--device") { Description = "cpu, cuda, cuda:N or auto", DefaultValueFactory = _ => "cpu" };
    public readonly Option<int?> Threads = new("--threads") { Description = "CPU threads for libtorch (default: all cores)" };
    public readonly Option<long> Seed = new("--seed") { Description = "random seed (same seed ⇒ same numbers on CPU)", DefaultValueFactory = _ => 42 };

    public void AddTo(Command c) { c.Add(Device); c.Add(Threads); c.Add(Seed); }

    /// <summary>Applies threads and seed; returns the device string (validated).</summary>
    public string Apply(ParseResult r)
    {
        TorchRuntime.SetThreads(r.GetValue(Threads));
        TorchRuntime.Seed(r.GetValue(Seed));
        var device = r.GetValue(Device)!;
        TorchRuntime.ResolveDevice(device);
        return device;
    }
}

/// <summary>Training-data options: augmentation (off by default; BLIP/MISS's fine-tuning crop scale when on) and prefetch.</summary>
sealed class AugmentOptions
{
    public readonly Option<bool> Augment = new("--augment") { Description = "training-time augmentation: random resized crop + small rotation (off by default; never at evaluation)" };
    public readonly Option<double> CropScale = new("--crop-scale") { Description = "with --augment: smallest crop area share (BLIP/MISS: 0.5; up to 1.0, ratio 3/4–4/3)", DefaultValueFactory = _ => 0.5 };
    public readonly Option<double> Rotation = new("--max-rotation") { Description = "with --augment: largest rotation in degrees (uniform ±)", DefaultValueFactory = _ => 10 };
    public readonly Option<int> Prefetch = new("--prefetch") { Description = "batches decoded ahead on a background thread (0 = inline)", DefaultValueFactory = _ => 2 };

    public void AddTo(Command c) { c.Add(Augment); c.Add(CropScale); c.Add(Rotation); c.Add(Prefetch); }

    public MedPeft.Data.Augmentation? Get(ParseResult r)
    {
        if (!r.GetValue(Augment)) return null;
        var a = MedPeft.Data.Augmentation.Blip with { MinScale = r.GetValue(CropScale), MaxRotationDegrees = r.GetValue(Rotation) };
        a.Validate();
        return a;
    }
}
