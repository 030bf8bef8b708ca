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

public sealed record VqaTrainJob
{
    public required string ModelDir { get; init; }
    public required string DataDir { get; init; }
    public string Format { get; init; } = "slake";
    public required string Strategy { get; init; }
    public required string OutDir { get; init; }
    public string Device { get; init; } = "cpu";
    public string Normalization { get; init; } = "blip";
    public double? LearningRate { get; init; }
    public TrainOptions Train { get; init; } = new();
    /// <summary>LoRA settings for "lora" terms (null: MILE's defaults, r 8, alpha 32, dropout 0.1 on query/value).</summary>
    public LoraConfig? Lora { get; init; }
    /// <summary>IA3 settings for "ia3" terms (null: PEFT's BERT mapping key/value/output.dense).</summary>
    public Ia3Config? Ia3 { get; init; }
    /// <summary>Prefix settings for "prefix" and "ptuning" terms (ptuning always without the MLP; null: 10 tokens, MLP 512).</summary>
    public PrefixTuningConfig? Prefix { get; init; }
    /// <summary>Prompt-tuning settings for "prompt" terms; a TEXT init's prompt_tuning_init_text is tokenized with the
    /// model's vocabulary here ([CLS] text [SEP], as PEFT calls the tokenizer).</summary>
    public PromptTuningConfig? Prompt { get; init; }
    /// <summary>P-tuning v1 settings for "ptuning-v1" terms (null: PEFT's defaults, MLP, hidden = token_dim; 20 tokens).</summary>
    public PromptEncoderConfig? PTuning { get; init; }
    /// <summary>The per-method settings above as one value (get: for the builder; init: from MethodOptions.Parse).</summary>
    public MethodOptions MethodOptions
    {
        get => new() { Lora = Lora, Ia3 = Ia3, Prefix = Prefix, Prompt = Prompt, PTuning = PTuning };
        init { Lora = value.Lora; Ia3 = value.Ia3; Prefix = value.Prefix; Prompt = value.Prompt; PTuning = value.PTuning; }
    }
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
}

public sealed record VqaTrainSummary(TrainableReport Trainable, TrainResult Result, VqaScores? Validation, double LearningRate, string OutDir);

/// <summary>The library side of `medpeft train` / `medpeft eval` for Med-VQA on a model folder.</summary>
public static class VqaJobs
{
    public static VqaTrainSummary Train(VqaTrainJob job, IProgress<TrainProgress>? progress = null, CancellationToken cancel = default)
    {
        if (LlavaJobs.IsLlavaFolder(job.ModelDir)) return LlavaJobs.Train(job, progress, cancel);
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
        VqaScores? last = null;
        TorchRuntime.Seed(job.Train.Seed);
        var result = Trainer.Run(model, train, batcher.Prepare, batch => model.forward(batcher.Batch(batch, device)).Loss!,
            job.Train with { LearningRate = lr, LogPath = Path.Combine(job.OutDir, "log.jsonl") },
            validate: validation.Count == 0 ? null : () => (last = VqaEvaluation.Evaluate(model, validation, batcher, greedy, device)).OverallAccuracy,
            progress: progress, cancel: cancel);
        var adapter = SaveAdapter(model, strategy, Path.Combine(job.OutDir, "adapter"));
        strategy.Finalize(model, FinalizeMode.MergeOrRemove);   // model/ is a plain HF checkpoint (prompt learning: the base; adapter/ has the prompt)
        BlipModelFolder.Save(model, Path.Combine(job.OutDir, "model"), Path.Combine(job.ModelDir, BlipModelFolder.VocabFile));
        var summary = new JsonObject
        {
            ["strategy"] = job.Strategy, ["learning_rate"] = lr, ["trainable"] = report.Trainable, ["total"] = report.Total,
            ["steps"] = result.Steps, ["train_seconds"] = result.TrainSeconds, ["steps_per_second"] = result.StepsPerSecond,
            ["peak_memory_bytes"] = result.PeakMemoryBytes, ["best_validation_acc"] = result.BestValidation, ["best_step"] = result.BestStep,
            ["towers"] = report.ToJson()["towers"]!.DeepClone(),
            ["adapter"] = adapter,
            ["augmentation"] = AugmentationJson(job.Augmentation),
            ["data_wait_seconds"] = result.DataWaitSeconds,
        };
        AtomicFile.WriteAllText(Path.Combine(job.OutDir, "train_summary.json"), summary.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        return new VqaTrainSummary(report, result, last, lr, job.OutDir);
    }

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

    public static (VqaScores Scores, List<VqaPrediction> Predictions) Evaluate(string modelDir, string dataDir, string format, string split,
        GenerationOptions decoding, string device = "cpu", string normalization = "blip", string? adapterDir = null,
        string? template = null, DecodingOverrides? overrides = null, Action<string>? log = null, string dtype = "auto")
    {
        if (LlavaJobs.IsLlavaFolder(modelDir)) return LlavaJobs.Evaluate(modelDir, dataDir, format, split, overrides, device, normalization, adapterDir, template, log, dtype);
        if (overrides is not null) decoding = overrides.ApplyTo(GenerationConfigFile.Read(modelDir).ForBlip(decoding));
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
