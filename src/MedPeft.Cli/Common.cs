using System.CommandLine;

namespace MedPeft.Cli;

/// <summary>Options every compute command shares: device, threads, seed.</summary>
sealed class RuntimeOptions
{
    public readonly Option<string> Device = new("--device") { Description = "cpu, cuda, cuda:N or auto", DefaultValueFactory = _ => "cpu" };
    public readonly Option<int?> Threads = new("--threads") { Description = "CPU threads for libtorch (default: all cores)" };
    public readonly Option<long> Seed = new("--seed") { Description = "random seed (same seed ⇒ same numbers on CPU)", DefaultValueFactory = _ => 42 };
    public readonly Option<bool> Reproducible = new(ReproducibleName) { Description = $"the same numbers on any x64 processor: MKL CNR, ATen's scalar kernels, no oneDNN, glibc math without FMA, {MedPeft.Reproducibility.Threads} threads (slower; docs/reproducibility.md)" };
    public const string ReproducibleName = "--reproducible";

    public void AddTo(Command c) { c.Add(Device); c.Add(Threads); c.Add(Seed); c.Add(Reproducible); }

    /// <summary>Applies the reproducible mode (Program.cs has restarted the process with its environment), threads and
    /// seed; returns the device string (validated).</summary>
    public string Apply(ParseResult r)
    {
        if (r.GetValue(Reproducible)) MedPeft.Reproducibility.Apply(r.GetValue(Threads));
        else TorchRuntime.SetThreads(r.GetValue(Threads));
        TorchRuntime.Seed(r.GetValue(Seed));
        var device = r.GetValue(Device)!;
        TorchRuntime.ResolveDevice(device);
        return device;
    }
}

/// <summary>Weight dtype (train, eval, parity) and, for training, gradient checkpointing.</summary>
sealed class PrecisionOptions
{
    public readonly Option<string> DType = new("--dtype")
    {
        Description = "weight dtype: auto (the checkpoint's torch_dtype when 16-bit, else fp32), bf16, fp16, fp32; 16-bit training keeps fp32 master copies of what trains (fp16 with dynamic loss scaling)",
        DefaultValueFactory = _ => "auto",
    };
    public readonly Option<bool> Checkpointing = new("--gradient-checkpointing") { Description = "recompute each transformer layer during backward instead of keeping its activations (less memory, ~1 extra forward)" };

    public PrecisionOptions() => DType.Validators.Add(v => { try { Precision.Parse(v.GetValueOrDefault<string>()!); } catch (MedPeftException e) { v.AddError(e.Message); } });

    public void AddTo(Command c, bool training) { c.Add(DType); if (training) c.Add(Checkpointing); }
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

/// <summary>Per-method tuning flags of `medpeft train`. They have no parser defaults: a flag not given leaves the
/// method's own default. Get turns the given flags into the same (method, option, value) entries a study file's
/// strategy options give and builds the configs with the one builder, MethodOptions.Parse.</summary>
public sealed class MethodCliOptions
{
    public readonly Option<int?> LoraR = new("--lora-r") { Description = "LoRA rank (lora and dora terms; default 8)" };
    public readonly Option<double?> LoraAlpha = new("--lora-alpha") { Description = "LoRA alpha (default 32)" };
    public readonly Option<double?> LoraDropout = new("--lora-dropout") { Description = "LoRA dropout (default 0.1)" };
    public readonly Option<string[]> LoraTargets = new("--lora-targets") { Description = "module-name suffixes (PEFT target_modules; default query value for BLIP, q_proj v_proj for LLaVA)", AllowMultipleArgumentsPerToken = true };
    public readonly Option<bool?> Rslora = new("--use-rslora") { Description = "scale by alpha/sqrt(r) instead of alpha/r" };
    public readonly Option<string[]> Ia3Targets = new("--ia3-targets") { Description = "IA3 target_modules suffixes (default key value output.dense for BLIP, k_proj v_proj down_proj for LLaVA)", AllowMultipleArgumentsPerToken = true };
    public readonly Option<string[]> Ia3Feedforward = new("--ia3-feedforward") { Description = "IA3 feedforward_modules (input-scaled; default output.dense for BLIP, down_proj for LLaVA)", AllowMultipleArgumentsPerToken = true };
    public readonly Option<int?> VirtualTokens = new("--num-virtual-tokens") { Description = "prefix/ptuning (default 10), prompt and ptuning-v1 (default 20) virtual tokens" };
    public readonly Option<int?> EncoderHidden = new("--encoder-hidden-size") { Description = "prefix tuning's MLP width (default 512); ptuning-v1's prompt encoder width (default the hidden size)" };
    public readonly Option<bool?> PrefixProjection = new("--prefix-projection") { Description = "prefix: reparameterise with the MLP (default true; false = P-tuning v2, same as --strategy ptuning)" };
    public readonly Option<string?> PromptInit = new("--prompt-init-text") { Description = "prompt tuning: initialise from this text's word embeddings (PEFT's TEXT init)" };
    public readonly Option<string?> ReparamType = new("--encoder-reparameterization-type") { Description = "ptuning-v1: prompt encoder MLP (default) or LSTM" };
    public readonly Option<int?> EncoderLayers = new("--encoder-num-layers") { Description = "ptuning-v1: LSTM layers (default 2)" };
    public readonly Option<double?> EncoderDropout = new("--encoder-dropout") { Description = "ptuning-v1: LSTM dropout between layers (default 0)" };

    public void AddTo(Command c)
    {
        foreach (var o in new Option[] { LoraR, LoraAlpha, LoraDropout, LoraTargets, Rslora, Ia3Targets, Ia3Feedforward, VirtualTokens, EncoderHidden, PrefixProjection, PromptInit, ReparamType, EncoderLayers, EncoderDropout })
            c.Add(o);
    }

    public MedPeft.Tuning.MethodOptions Get(ParseResult r)
    {
        static string? Inv(object? v) => v is null ? null : Convert.ToString(v, System.Globalization.CultureInfo.InvariantCulture);
        static string? List(string[]? v) => v is null || v.Length == 0 ? null : string.Join(",", v);
        // Method null: every method taking the option (--num-virtual-tokens → prefix, ptuning, prompt, ptuning-v1).
        var given = new (string? Method, string Key, string? Value)[]
        {
            ("lora", "r", Inv(r.GetValue(LoraR))), ("lora", "alpha", Inv(r.GetValue(LoraAlpha))), ("lora", "dropout", Inv(r.GetValue(LoraDropout))),
            ("lora", "targets", List(r.GetValue(LoraTargets))), ("lora", "rslora", Inv(r.GetValue(Rslora))),
            ("ia3", "targets", List(r.GetValue(Ia3Targets))), ("ia3", "feedforward", List(r.GetValue(Ia3Feedforward))),
            (null, "num_virtual_tokens", Inv(r.GetValue(VirtualTokens))), (null, "encoder_hidden_size", Inv(r.GetValue(EncoderHidden))),
            ("prefix", "prefix_projection", Inv(r.GetValue(PrefixProjection))), ("prompt", "prompt_init_text", r.GetValue(PromptInit)),
            ("ptuning-v1", "encoder_reparameterization_type", r.GetValue(ReparamType)), ("ptuning-v1", "encoder_num_layers", Inv(r.GetValue(EncoderLayers))),
            ("ptuning-v1", "encoder_dropout", Inv(r.GetValue(EncoderDropout))),
        };
        return MedPeft.Tuning.MethodOptions.Parse(given.Where(g => g.Value is not null).Select(g => (g.Method, g.Key, g.Value!)), null, "train");
    }
}
