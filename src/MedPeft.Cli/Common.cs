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

/// <summary>Report-generation options (`--task report`); defaults follow R2Gen per dataset (ReportTaskOptions.For).</summary>
sealed class ReportCliOptions
{
    public readonly Option<string> Prompt = new("--prompt") { Description = "report task: decoder prompt, never trained on (BLIP captioning style, e.g. \"findings :\"; default none)", DefaultValueFactory = _ => "" };
    public readonly Option<int?> Views = new("--views") { Description = "report task: views per study (iu-xray default 2: both encoded, features concatenated as R2Gen; 1 = first image)" };
    public readonly Option<int?> MaxWords = new("--max-words") { Description = "report task: words kept per cleaned report, targets and references (R2Gen: iu-xray 59, mimic-cxr 99; 0 = all)" };
    public readonly Option<string> Clean = new("--clean") { Description = "report task: r2gen (the dataset's R2Gen cleaner) or none", DefaultValueFactory = _ => "r2gen" };

    public void AddTo(Command c) { c.Add(Prompt); c.Add(Views); c.Add(MaxWords); c.Add(Clean); }

    public MedPeft.Training.ReportTaskOptions Get(ParseResult r, string format, int? beams = null, int? maxNew = null, int? minNew = null, int? batch = null)
    {
        var o = MedPeft.Training.ReportTaskOptions.For(format);
        var clean = r.GetValue(Clean)!.ToLowerInvariant() switch
        {
            "r2gen" => o.Cleaning,
            "none" => MedPeft.Training.ReportCleaningMode.None,
            var other => throw new MedPeftException($"--clean: unknown value \"{other}\" (r2gen or none)"),
        };
        return o with
        {
            Prompt = r.GetValue(Prompt)!, Views = r.GetValue(Views) ?? o.Views, MaxWords = r.GetValue(MaxWords) ?? o.MaxWords, Cleaning = clean,
            BatchSize = batch ?? o.BatchSize,
            Decoding = o.Decoding with
            {
                NumBeams = beams ?? o.Decoding.NumBeams, MaxNewTokens = maxNew ?? o.Decoding.MaxNewTokens, MinNewTokens = minNew ?? o.Decoding.MinNewTokens,
            },
        };
    }
}
