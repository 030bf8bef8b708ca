using MedPeft.Data;
using MedPeft.Tuning;

namespace MedPeft.Experiments;

/// <summary>A model of a study: a preset architecture, a checkpoint folder, or one of the embedded benchmark's
/// models (<c>embedded</c> = the tiny BLIP pretrained on the synthetic captions, <c>embedded-random</c> = the same
/// architecture from random init).</summary>
public sealed record StudyModel(string Name, string? Preset, string? Path)
{
    public const string Embedded = "embedded";
    public const string EmbeddedRandom = "embedded-random";
    public bool IsEmbedded => Preset is Embedded or EmbeddedRandom;
    /// <summary>The embedded model's pretraining seed (also the random-init seed); part of the run key.</summary>
    public long PretrainSeed { get; init; } = 42;
    /// <summary>A PEFT adapter folder applied to the checkpoint (<c>adapter:</c> next to <c>path:</c>): LORA, IA3 or
    /// LN_TUNING, merged into the weights once (<see cref="AdapterMerge"/>) — zero-shot scores base + adapter, a
    /// strategy fine-tunes from it. Part of the run key.</summary>
    public string? Adapter { get; init; }
    /// <summary>Weight dtype of a checkpoint folder's runs (<c>dtype:</c> auto, bf16, fp16, fp32; see <see cref="Precision"/>).
    /// Part of the run key when not auto.</summary>
    public string DType { get; init; } = "auto";
    /// <summary>Activation checkpointing while training (<c>gradient_checkpointing:</c>). Part of the run key when on
    /// (it changes memory and time, not results).</summary>
    public bool GradientCheckpointing { get; init; }

    /// <summary>The training options of this model's runs: the run's schedule plus dtype and checkpointing.</summary>
    public Training.TrainOptions Apply(Training.TrainOptions o) => o with { DType = DType, GradientCheckpointing = GradientCheckpointing };

    /// <summary>The checkpoint folder runs on a folder dataset start from: <see cref="Path"/>, or with an
    /// <see cref="Adapter"/> the merged folder cached under <paramref name="cacheDir"/>/merged (keyed by both folders'
    /// full paths and the adapter weights' size and time; made once, under a lock, atomically).</summary>
    public string FolderFor(string method, string datasetName, string cacheDir)
    {
        var dir = Path ?? throw new MedPeftException(
            $"{method}: model \"{Name}\" (preset {Preset}) has no `path:`; running on {datasetName} needs its checkpoint folder");
        if (Adapter is null) return dir;
        var weights = System.IO.Path.Combine(Adapter, PeftAdapters.WeightsFile);
        if (!File.Exists(weights)) throw new MedPeftException($"{Adapter}: no {PeftAdapters.WeightsFile} (model \"{Name}\", adapter:)");
        var info = new FileInfo(weights);
        var id = $"{System.IO.Path.GetFullPath(dir)}\n{System.IO.Path.GetFullPath(Adapter)}\n{info.Length}\n{info.LastWriteTimeUtc.Ticks}";
        var hash = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(id)))[..16];
        var merged = System.IO.Path.Combine(cacheDir, "merged", $"{System.IO.Path.GetFileName(dir.TrimEnd('/'))}-{hash}");
        using var cacheLock = CacheLock.Acquire(merged + ".lock", default);
        if (!File.Exists(System.IO.Path.Combine(merged, "config.json"))) AdapterMerge.Run(dir, Adapter, merged);
        return merged;
    }
}

/// <summary>An extra test set evaluated with the model fine-tuned on the run's dataset (cross-dataset zero-shot).</summary>
public sealed record StudyTestSet(string Name, string Format, string Dir, string Split);

/// <summary>A dataset of a study. Format <c>embedded</c> is the synthetic benchmark (SLAKE layout, generated and
/// cached); others are <see cref="DatasetFormats"/> names with a folder.</summary>
public sealed record StudyDataset(string Name, string Task, string Format, string? Dir, string Train, string Validation, string Test,
    IReadOnlyList<StudyTestSet> ExtraTests)
{
    public const string EmbeddedFormat = "embedded";
    public bool IsEmbedded => Format == EmbeddedFormat;
}

/// <summary>A strategy of a study: a strategy spec (<c>ln</c>, <c>lora@text</c>, <c>full@vision+ln@text</c>; <c>none</c>
/// = zero-shot, evaluate only), a label for the tables, method options (LoRA: r, alpha, dropout, targets, rslora) and
/// learning rates (null = the strategy's default from <see cref="StrategyDefaults"/>; <see cref="double.NaN"/> = auto,
/// i.e. an LR range test).</summary>
public sealed record StudyStrategy(string Label, string Spec, IReadOnlyDictionary<string, string> Options, IReadOnlyList<double?> LearningRates)
{
    /// <summary>This strategy's seeds when they differ from the study's (the built-in grid runs more seeds for the
    /// core methods); null = <see cref="StudyTraining.Seeds"/>.</summary>
    public IReadOnlyList<long>? Seeds { get; init; }

    public const string ZeroShot = "none";
    public bool IsZeroShot => Spec == ZeroShot;

    /// <summary>The strategy's options as method configs, through the builder the CLI uses (MethodOptions.Parse; option
    /// names and types in MethodOptions.Known, checked when the study file is read).</summary>
    public MethodOptions ParseOptions() =>
        Tuning.MethodOptions.Parse(Options.Select(o => ((string?)null, o.Key, o.Value)), Tuning.MethodOptions.MethodsOf(Spec), $"strategy \"{Label}\"");

    /// <summary>Method instances built from the options, replacing the registry's by name (see TuningStrategy.Parse);
    /// no tokenizer here, so a prompt_init_text option needs the job path (VqaJobs), which has one.</summary>
    public IReadOnlyDictionary<string, ITuningMethod>? Methods(TowerLayout layout) =>
        Options.Count == 0 ? null : ParseOptions().Methods(layout, encode: null);
}

/// <summary>Training settings shared by every run of a study (per-strategy learning rates live on the strategy).</summary>
public sealed record StudyTraining
{
    public int Epochs { get; init; } = 5;
    public int? MaxSteps { get; init; }
    public int BatchSize { get; init; } = 32;
    /// <summary>Validation questions used for selection (0 = all).</summary>
    public int ValidationLimit { get; init; }
    /// <summary>Test questions scored (0 = all); for smoke tests of a study file.</summary>
    public int TestLimit { get; init; }
    public IReadOnlyList<long> Seeds { get; init; } = [42];
    /// <summary>Optimizer steps per trial of the LR range test (learning_rate: auto).</summary>
    public int LrSweepSteps { get; init; } = LrSweep.DefaultSteps;
    /// <summary>Runs in the reproducible mode (<see cref="Reproducibility"/>); part of the run key, since the mode
    /// changes the numbers.</summary>
    public bool Reproducible { get; init; }
}

/// <summary>A parsed study file (or the built-in grid): the cross product models × datasets × strategies × learning
/// rates × seeds, expanded by <see cref="StudyPlan"/>.</summary>
public sealed record StudySpec(string Name, IReadOnlyList<StudyModel> Models, IReadOnlyList<StudyDataset> Datasets,
    IReadOnlyList<StudyStrategy> Strategies, StudyTraining Training, string Source)
{
    /// <summary>The built-in grid on the embedded benchmark, for Med-VQA and report generation (<paramref name="tasks"/>
    /// null = both): zero-shot, every registered tuning method from the pretrained model at its default learning rate,
    /// and full fine-tuning from random init (what pretraining buys). Registry-driven: a method added to
    /// <see cref="TuningMethods"/> joins automatically.</summary>
    public static StudySpec Embedded(bool quick, IReadOnlyList<string>? strategies = null, bool includeRandomInit = true,
        int? epochs = null, double? lr = null, long seed = 42, bool lrSweep = false, IReadOnlyList<string>? tasks = null, int? seeds = null)
    {
        // The core methods (and full from random init) run several fine-tuning seeds — seed, seed + 1, … — for
        // intervals and paired differences; the other methods and zero-shot (seed-independent) one. The pretrained
        // model is the same for all (pretraining seed = seed), so the intervals are over fine-tuning randomness only.
        int coreSeeds = seeds ?? (quick ? 1 : DefaultCoreSeeds);
        if (coreSeeds < 1) throw new MedPeftException($"--seeds {coreSeeds}: must be at least 1");
        IReadOnlyList<long>? SeedsOf(string spec) => coreSeeds > 1 && CoreMethods.Contains(spec) ? Enumerable.Range(0, coreSeeds).Select(i => seed + i).ToList() : null;
        double? rate = lrSweep ? double.NaN : lr;
        var pretrained = new StudyModel("pretrained", StudyModel.Embedded, null) { PretrainSeed = seed };
        var random = new StudyModel("random init", StudyModel.EmbeddedRandom, null) { PretrainSeed = seed };
        var name = quick ? "embedded-quick" : "embedded";
        StudyDataset Bench(string task, string label) => new(label, task, StudyDataset.EmbeddedFormat, quick ? "quick" : "default",
            Splits.Train, Splits.Validation, Splits.Test, []);
        // The same benchmark and pretrained model: its Med-VQA split, then its IU-Xray-layout report split.
        var datasets = new List<StudyDataset>();
        if (tasks is null || tasks.Contains("vqa")) datasets.Add(Bench("vqa", name));
        if (tasks is null || tasks.Contains("report")) datasets.Add(Bench("report", name + "-report"));
        if (datasets.Count == 0) throw new MedPeftException($"--task: expected vqa or report, got {string.Join(", ", tasks!)}");
        var list = (strategies ?? TuningMethods.All.Keys.ToList())
            .Select(s => new StudyStrategy(s, s, new Dictionary<string, string>(), [rate]) { Seeds = SeedsOf(s) }).ToList();
        var plan = EmbeddedPlan.For(quick);
        var training = new StudyTraining { Epochs = epochs ?? plan.FineTuneEpochs, BatchSize = plan.BatchSize, ValidationLimit = plan.ValidationLimit, Seeds = [seed] };
        var spec = new StudySpec(name, [pretrained], datasets,
            [new StudyStrategy("zero-shot", StudyStrategy.ZeroShot, new Dictionary<string, string>(), [null]), .. list], training, "built-in grid");
        return spec with { ExtraRuns = includeRandomInit ? [(random, new StudyStrategy("full (random init)", "full", new Dictionary<string, string>(), [rate]) { Seeds = SeedsOf("full") })] : [] };
    }

    /// <summary>The methods the paper compares (and LoRA, the common baseline): several seeds in the built-in grid.</summary>
    public static readonly IReadOnlySet<string> CoreMethods = new HashSet<string> { "full", "ln", "ffn", "attn", "lora" };
    public const int DefaultCoreSeeds = 3;

    /// <summary>Runs outside the cross product (the built-in grid's "full from random init" row): model and strategy
    /// pairs run on every dataset and seed.</summary>
    public IReadOnlyList<(StudyModel Model, StudyStrategy Strategy)> ExtraRuns { get; init; } = [];
}

/// <summary>The embedded benchmark's sizes: the default grid and the reduced <c>--quick</c> one. Report generation uses
/// the first <see cref="ReportTrain"/> / <see cref="ReportValidation"/> / <see cref="ReportTest"/> studies of the
/// benchmark's IU-Xray split (sized to the time budget; the generated split is not changed, so the benchmark, its
/// vocabulary and the pretrained model — and the Med-VQA numbers — stay the same).</summary>
public sealed record EmbeddedPlan(Data.Synthetic.SyntheticBenchOptions Bench, int PretrainEpochs, int FineTuneEpochs, int ValidationLimit, int BatchSize)
{
    public int ReportTrain { get; init; } = Bench.ReportTrain;
    public int ReportValidation { get; init; } = Bench.ReportVal;
    public int ReportTest { get; init; } = Bench.ReportTest;

    public static readonly EmbeddedPlan Default = new(Data.Synthetic.SyntheticBenchOptions.Default, PretrainEpochs: 7, FineTuneEpochs: 5, ValidationLimit: 300, BatchSize: 32);
    public static readonly EmbeddedPlan Quick = new(Data.Synthetic.SyntheticBenchOptions.Quick, PretrainEpochs: 4, FineTuneEpochs: 3, ValidationLimit: 80, BatchSize: 32);
    public static EmbeddedPlan For(bool quick) => quick ? Quick : Default;
    public static EmbeddedPlan ForSize(string size) => size == "quick" ? Quick : Default;
}
