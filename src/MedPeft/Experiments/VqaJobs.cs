using System.Text.Json;
using System.Text.Json.Nodes;
using MedPeft.Data;
using MedPeft.Evaluation;
using MedPeft.Models;
using MedPeft.Models.Blip;
using MedPeft.Training;
using MedPeft.Tuning;
using TorchSharp;

namespace MedPeft.Experiments;

/// <summary>A fine-tuning job for <see cref="FineTuning.Train"/>: any family (BLIP, LLaVA) and task (Med-VQA, or report
/// generation with a report format or <see cref="Task"/> "report").</summary>
public sealed record VqaTrainJob
{
    /// <summary>"vqa" or "report" (null: the dataset format's task).</summary>
    public string? Task { get; init; }
    /// <summary>BLIP report generation: views, words, cleaning, decoding, batch (null: R2Gen's for the format with this
    /// job's batch size, normalisation, augmentation, prefetch and validation limit).</summary>
    public ReportTaskOptions? ReportOptions { get; init; }
    public required string ModelDir { get; init; }
    public required string DataDir { get; init; }
    public string Format { get; init; } = "slake";
    public required string Strategy { get; init; }
    public required string OutDir { get; init; }
    public string Device { get; init; } = "cpu";
    public string Normalization { get; init; } = "blip";
    public double? LearningRate { get; init; }
    public TrainOptions Train { get; init; } = new();
    /// <summary>Per-method settings (MethodOptions.Parse; a TEXT prompt init is tokenized with the model's vocabulary,
    /// [CLS] text [SEP], as PEFT calls the tokenizer). Empty: every method's defaults.</summary>
    public MethodOptions MethodOptions { get; init; } = new();
    /// <summary>At most this many validation questions are used for selection (0 = all).</summary>
    public int ValidationLimit { get; init; } = 0;
    /// <summary>LLaVA folders: the conversation template (null: the model's default, see ConversationTemplates).</summary>
    public string? Template { get; init; }
    /// <summary>LLaVA on a report dataset (iu-xray, mimic-cxr): the instruction (null: LlavaJobs.DefaultReportPrompt).</summary>
    public string? ReportPrompt { get; init; }
    /// <summary>Informational lines (which template, image token, config translation).</summary>
    public Action<string>? Log { get; init; }
    /// <summary>Training-time image augmentation (null = none, the default); evaluation never augments.</summary>
    public Augmentation? Augmentation { get; init; }
    /// <summary>Score the test split with the trained model in memory, before it is finalized and saved, once per
    /// decoding (the same defaults as `medpeft eval`, overridden): what a reload of the outputs must reproduce.</summary>
    public IReadOnlyList<DecodingOverrides> ScoreTest { get; init; } = [];
}



/// <summary>Med-VQA on a BLIP folder (BlipForQuestionAnswering), behind <see cref="FineTuning"/>.</summary>
public static class VqaJobs
{
    internal static FineTuneSummary TrainBlip(VqaTrainJob job, IProgress<TrainProgress>? progress = null, CancellationToken cancel = default)
    {
        var device = TorchRuntime.ResolveDevice(job.Device);
        var tokenizer = BlipModelFolder.LoadTokenizer(job.ModelDir);
        using var model = BlipModelFolder.Load(job.ModelDir, device, Precision.Resolve(job.Train.DType, job.ModelDir));
        var strategy = ParseStrategy(job, tokenizer);
        var report = strategy.Apply(model);
        var train = Read(job.Format, job.DataDir, Splits.Train);
        var validation = Read(job.Format, job.DataDir, Splits.Validation);
        if (job.ValidationLimit > 0) validation = validation.Take(job.ValidationLimit).ToList();
        using var images = new ImageCache(ImageProcessor.ForFolder(job.ModelDir, model.Config.VisionConfig.ImageSize, Normalization.Get(job.Normalization)));
        job.Augmentation?.Validate();
        var batcher = new VqaBatcher(tokenizer, images) { Augmentation = job.Augmentation, AugmentationSeed = job.Train.Seed };
        double lr = job.LearningRate ?? StrategyDefaults.LearningRate(job.Strategy);
        Directory.CreateDirectory(job.OutDir);
        var greedy = VqaEvaluation.MissDecoding with { NumBeams = 1 };
        TorchRuntime.Seed(job.Train.Seed);
        var result = Trainer.Run(model, train, batcher.Prepare, batch => model.forward(batcher.Batch(batch, device)).Loss!,
            job.Train with { LearningRate = lr, LogPath = Path.Combine(job.OutDir, "log.jsonl") },
            validate: validation.Count == 0 ? null : () => VqaEvaluation.Evaluate(model, validation, batcher, greedy, device).OverallAccuracy,
            progress: progress, cancel: cancel);
        var test = job.ScoreTest.Count == 0 ? [] : Read(job.Format, job.DataDir, Splits.Test);
        var tests = job.ScoreTest.Select(o => new InMemoryTest(o, VqaEvaluation.Predict(model, test, batcher, BlipDecoding(job.ModelDir, o), device), null)).ToList();
        var adapter = SaveAdapter(model, strategy, Path.Combine(job.OutDir, "adapter"));
        bool adapterRequired = TrainedOutputs.Finalize(model, strategy);
        BlipModelFolder.Save(model, Path.Combine(job.OutDir, "model"), Path.Combine(job.ModelDir, BlipModelFolder.VocabFile));
        var summary = new JsonObject
        {
            ["task"] = "vqa", ["strategy"] = job.Strategy, ["learning_rate"] = lr, ["trainable"] = report.Trainable, ["total"] = report.Total,
            ["steps"] = result.Steps, ["train_seconds"] = result.TrainSeconds, ["steps_per_second"] = result.StepsPerSecond,
            ["peak_memory_bytes"] = result.PeakMemoryBytes, ["best_validation_acc"] = result.BestValidation, ["best_step"] = result.BestStep,
            ["towers"] = report.ToJson()["towers"]!.DeepClone(),
            ["adapter"] = adapter, [TrainedOutputs.AdapterRequiredKey] = adapterRequired,
            ["augmentation"] = AugmentationJson(job.Augmentation),
            ["data_wait_seconds"] = result.DataWaitSeconds, ["reproducibility"] = Reproducibility.Settings?.DeepClone(),
        };
        AtomicFile.WriteAllText(Path.Combine(job.OutDir, "train_summary.json"), summary.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        return new FineTuneSummary(report, result, lr, job.OutDir, "vqa") { Tests = tests };
    }

    /// <summary>BLIP VQA decoding: MISS's (beam 3, ≤ 9 tokens), else the folder's generation_config.json, then the overrides.</summary>
    static GenerationOptions BlipDecoding(string modelDir, DecodingOverrides? overrides, GenerationOptions? fallback = null) =>
        overrides is null ? fallback ?? VqaEvaluation.MissDecoding : overrides.ApplyTo(GenerationConfigFile.Read(modelDir).ForBlip(fallback ?? VqaEvaluation.MissDecoding));

    static TuningStrategy ParseStrategy(VqaTrainJob job, BlipTokenizer tokenizer) =>
        TuningStrategy.Parse(job.Strategy, TowerLayout.Blip, MethodOverrides(job, TowerLayout.Blip, text => tokenizer.Encode(text, int.MaxValue)));

    /// <summary>Method instances built from the job's per-method options (CLI flags or a study strategy's options) by
    /// the one builder, <see cref="MethodOptions.Methods"/>; a TEXT prompt init is tokenized with <paramref name="encode"/>.</summary>
    internal static IReadOnlyDictionary<string, ITuningMethod>? MethodOverrides(VqaTrainJob job, TowerLayout layout, Func<string, int[]> encode) =>
        job.MethodOptions.Methods(layout, encode);

    public static JsonNode? AugmentationJson(Augmentation? a) => a is null ? null : new JsonObject
    {
        ["random_resized_crop_scale"] = new JsonArray(a.MinScale, a.MaxScale), ["random_resized_crop_ratio"] = new JsonArray(a.MinRatio, a.MaxRatio),
        ["max_rotation_degrees"] = a.MaxRotationDegrees,
    };

    /// <summary>Writes what was trained as a PEFT adapter next to the full model (<see cref="TuningStrategy.SaveAdapter"/>:
    /// each method saves its own PEFT type; full fine-tuning and mixed strategies have none); returns the type or null.</summary>
    public static string? SaveAdapter(TorchSharp.torch.nn.Module model, TuningStrategy strategy, string dir) => strategy.SaveAdapter(model, dir);

    internal static (VqaScores Scores, List<VqaPrediction> Predictions) EvaluateBlip(string modelDir, string dataDir, string format, string split,
        GenerationOptions decoding, string device = "cpu", string normalization = "blip", string? adapterDir = null, DecodingOverrides? overrides = null,
        string dtype = "auto")
    {
        decoding = BlipDecoding(modelDir, overrides, decoding);
        var dev = TorchRuntime.ResolveDevice(device);
        var tokenizer = BlipModelFolder.LoadTokenizer(modelDir);
        using var model = BlipModelFolder.Load(modelDir, dev, Precision.Resolve(dtype, modelDir));
        if (adapterDir is not null) PeftAdapters.Load(model, adapterDir);
        using var images = new ImageCache(ImageProcessor.ForFolder(modelDir, model.Config.VisionConfig.ImageSize, Normalization.Get(normalization)));
        var batcher = new VqaBatcher(tokenizer, images);
        var samples = Read(format, dataDir, split);
        var predictions = VqaEvaluation.Predict(model, samples, batcher, decoding, dev);
        return (VqaScorer.Score(predictions), predictions);
    }

    static List<VqaSample> Read(string format, string dir, string split) => DatasetFormats.ReadVqa(format, dir, split).ToList();
}
