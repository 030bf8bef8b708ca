using System.Text.Json;
using System.Text.Json.Nodes;
using MedPeft.Data;
using MedPeft.Evaluation;
using MedPeft.Models;
using MedPeft.Models.Blip;
using MedPeft.Training;
using MedPeft.Tuning;
using TorchSharp;
using static TorchSharp.torch;

namespace MedPeft.Experiments;

/// <summary>What one report-generation fine-tuning run measured (the report-generation analogue of a study row).</summary>
public sealed record ReportFineTuneResult(
    string Strategy, ReportScores Test, IReadOnlyList<ReportPair> TestPredictions,
    long Trainable, long Total, double LearningRate, int Steps, double TrainSeconds, double StepsPerSecond, long PeakMemoryBytes,
    double? BestValidationBleu4, int? BestStep, CaptioningLoad Load)
{
    /// <summary>The trainer's whole result (loss curve, selection, timing), for study tables and plots.</summary>
    public TrainResult? Result { get; init; }

    public double TrainableShare => Total == 0 ? 0 : 100.0 * Trainable / Total;

    public JsonObject ToJson() => new()
    {
        ["strategy"] = Strategy, ["trainable"] = Trainable, ["total"] = Total, ["trainable_percent"] = TrainableShare,
        ["BLEU_1"] = Test.Bleu1, ["BLEU_2"] = Test.Bleu2, ["BLEU_3"] = Test.Bleu3, ["BLEU_4"] = Test.Bleu4,
        ["ROUGE_L"] = Test.RougeL, ["CIDEr"] = Test.Cider, ["best_validation_bleu4"] = BestValidationBleu4, ["best_step"] = BestStep,
        ["learning_rate"] = LearningRate, ["steps"] = Steps, ["train_seconds"] = TrainSeconds, ["steps_per_second"] = StepsPerSecond,
        ["peak_memory_bytes"] = PeakMemoryBytes, ["load"] = Load.Describe(),
    };
}

public sealed record ReportTrainJob
{
    public required string ModelDir { get; init; }
    public required string DataDir { get; init; }
    public string Format { get; init; } = DatasetFormats.IuXray;
    public required string Strategy { get; init; }
    public required string OutDir { get; init; }
    public string Device { get; init; } = "cpu";
    public double? LearningRate { get; init; }
    public TrainOptions Train { get; init; } = new();
    /// <summary>Null: R2Gen's defaults for the format (<see cref="ReportTaskOptions.For"/>).</summary>
    public ReportTaskOptions? Options { get; init; }
    /// <summary>Per-method settings (CLI flags or a study strategy's options), built by the one builder as for VQA.</summary>
    public MethodOptions MethodOptions { get; init; } = new();
    /// <summary>As <see cref="VqaTrainJob.ScoreTest"/>: the test split scored in memory before saving, per decoding.</summary>
    public IReadOnlyList<DecodingOverrides> ScoreTest { get; init; } = [];
}



/// <summary>Medical report generation with BLIP (BlipForConditionalGeneration: image(s) → report): fine-tuning with a
/// tuning strategy, selection on validation BLEU-4 (R2Gen's criterion, greedy decoding), test with beam search,
/// BLEU-1..4 / ROUGE-L / CIDEr-D. A VQA-layout folder (BlipForQuestionAnswering, e.g. the embedded study's pretrained
/// model or MISS) initialises the captioning model: its vision_model and text_decoder are kept, text_encoder dropped.</summary>
public static class ReportJobs
{
    /// <summary>The library entry point for studies: fine-tune the captioning model initialised from
    /// <paramref name="pretrainedDir"/> with <paramref name="strategy"/> (e.g. "ln", "full", "lora") at
    /// <paramref name="learningRate"/> for <paramref name="epochs"/>, select on validation BLEU-4, score test.
    /// <paramref name="methods"/> replaces registry methods by name (a study strategy's options, e.g. LoRA's r).</summary>
    public static ReportFineTuneResult FineTune(string pretrainedDir, string strategy, double learningRate, int epochs,
        IReadOnlyList<ReportSample> train, IReadOnlyList<ReportSample> validation, IReadOnlyList<ReportSample> test,
        Device device, long seed, ReportTaskOptions? options = null, IProgress<TrainProgress>? progress = null,
        string? logPath = null, CancellationToken cancel = default, IReadOnlyDictionary<string, ITuningMethod>? methods = null, int? maxSteps = null)
    {
        options ??= new ReportTaskOptions();
        using var s = CaptioningSession.Open(pretrainedDir, device, options, seed);
        var (model, load, batcher) = (s.Model, s.Load, s.Batcher);
        var train_ = new TrainOptions { Epochs = epochs, MaxSteps = maxSteps, BatchSize = options.BatchSize, Seed = seed, LogPath = logPath, PrefetchBatches = options.PrefetchBatches };
        var (report, result, fitted) = Train(model, strategy, methods, learningRate, train, validation, batcher, train_, device, progress, cancel);
        var pairs = ReportEvaluation.Predict(model, test, fitted, options.Decoding, device, options.BatchSize);
        return new ReportFineTuneResult(strategy, ReportMetrics.Compute(pairs), pairs, report.Trainable, report.Total, learningRate, result.Steps,
            result.TrainSeconds, result.StepsPerSecond, result.PeakMemoryBytes, result.BestValidation, result.BestStep, load) { Result = result };
    }

    /// <summary>One trial of the LR range test (<see cref="LrSweep"/>) for report generation: <paramref name="steps"/>
    /// optimizer steps at <paramref name="learningRate"/> from the folder's weights, validation BLEU-4 (×100, greedy)
    /// on <paramref name="validation"/>; a diverged rate throws <see cref="TrainingDivergedException"/>, which
    /// <see cref="LrSweep.Pick"/> records.</summary>
    public static LrTrial SweepTrial(string pretrainedDir, string strategy, double learningRate, int steps, IReadOnlyList<ReportSample> train,
        IReadOnlyList<ReportSample> validation, Device device, long seed, ReportTaskOptions? options = null,
        IReadOnlyDictionary<string, ITuningMethod>? methods = null, CancellationToken cancel = default)
    {
        options ??= new ReportTaskOptions();
        using var s = CaptioningSession.Open(pretrainedDir, device, options, seed);
        var (model, batcher) = (s.Model, s.Batcher);
        var o = new TrainOptions { Epochs = 1, MaxSteps = steps, BatchSize = options.BatchSize, Seed = seed, PrefetchBatches = options.PrefetchBatches };
        var (_, r, _) = Train(model, strategy, methods, learningRate, train, validation, batcher, o, device, null, cancel);
        return LrSweep.Trial(learningRate, r);
    }

    /// <summary>Zero-shot report generation: the captioning model initialised from <paramref name="modelDir"/>
    /// (a VQA folder drops its text_encoder), untuned, generating for <paramref name="test"/> with the test decoding.
    /// Returns the scores, the pairs, the model's parameter count (tied tensors once), the process's peak memory
    /// during the evaluation and its wall time.</summary>
    public static (ReportScores Scores, IReadOnlyList<ReportPair> Pairs, long Total, long PeakMemoryBytes, double Seconds, CaptioningLoad Load) ZeroShot(
        string modelDir, IReadOnlyList<ReportSample> test, Device device, ReportTaskOptions? options = null)
    {
        options ??= new ReportTaskOptions();
        PeakMemory.Reset();
        var clock = System.Diagnostics.Stopwatch.StartNew();
        using var s = CaptioningSession.Open(modelDir, device, options);
        var (model, load) = (s.Model, s.Load);
        var pairs = ReportEvaluation.Predict(model, test, s.Batcher, options.Decoding, device, options.BatchSize);
        long total = ModelUtils.UniqueParameters(model).Sum(p => p.Param.numel());
        return (ReportMetrics.Compute(pairs), pairs, total, PeakMemory.Bytes(), clock.Elapsed.TotalSeconds, load);
    }

    /// <summary>Prompt tuning prepends its virtual tokens to the decoder's input and prefix tuning's count as past length;
    /// either way they take position embeddings:
    /// the batcher for a model carrying such a prompt leaves them room (targets and generated reports get that many
    /// fewer positions), so a small model's position table is never indexed past its end.</summary>
    static ReportBatcher FitPositions(ReportBatcher b, BlipForConditionalGeneration model)
    {
        // Prefix tuning takes positions too: HF offsets BERT position ids by the past length, i.e. the virtual tokens.
        long virtualTokens = PromptTuning.TowersOf(model).Sum(t => t.Length)
            + PrefixTuning.TowersOf(model).Where(t => t.Embeddings is not null).Sum(t => (long)t.NumVirtualTokens);
        if (virtualTokens == 0) return b;
        int room = model.Config.TextConfig.MaxPositionEmbeddings - (int)virtualTokens;
        if (room < 8) throw new MedPeftException($"prompt/prefix tuning: {virtualTokens} virtual tokens leave {room} of the decoder's {model.Config.TextConfig.MaxPositionEmbeddings} positions for the report");
        return new ReportBatcher(b.Tokenizer, b.Images, b.Options, room) { AugmentationSeed = b.AugmentationSeed };
    }

    static (TrainableReport, TrainResult, ReportBatcher) Train(BlipForConditionalGeneration model, string strategySpec, IReadOnlyDictionary<string, ITuningMethod>? methods, double lr,
        IReadOnlyList<ReportSample> train, IReadOnlyList<ReportSample> validation, ReportBatcher batcher, TrainOptions o, Device device,
        IProgress<TrainProgress>? progress, CancellationToken cancel)
    {
        var strategy = TuningStrategy.Parse(strategySpec, TowerLayout.Blip, methods);
        TorchRuntime.Seed(o.Seed);
        var report = strategy.Apply(model);
        batcher = FitPositions(batcher, model);
        if (batcher.Options.ValidationLimit > 0) validation = validation.Take(batcher.Options.ValidationLimit).ToList();
        batcher.Options.Augmentation?.Validate();
        var greedy = batcher.Options.Decoding with { NumBeams = 1 };
        var result = Trainer.Run(model, train, batcher.Prepare, b => ReportBatcher.Loss(model, batcher.Batch(b, device)),
            o with { LearningRate = lr },
            validate: validation.Count == 0 ? null : () => 100 * ReportEvaluation.Evaluate(model, validation, batcher, greedy, device, batcher.Options.BatchSize).Bleu4,
            progress: progress, cancel: cancel);
        return (report, result, batcher);
    }

    /// <summary>`medpeft train --task report`: writes model/ (BlipForConditionalGeneration), adapter/ (as VQA),
    /// log.jsonl and train_summary.json.</summary>
    internal static FineTuneSummary Train(ReportTrainJob job, IProgress<TrainProgress>? progress = null, CancellationToken cancel = default)
    {
        var device = TorchRuntime.ResolveDevice(job.Device);
        var options = job.Options ?? ReportTaskOptions.For(job.Format);
        using var s = CaptioningSession.Open(job.ModelDir, device, options, job.Train.Seed);
        var (model, load, batcher) = (s.Model, s.Load, s.Batcher);
        var train = Read(job.Format, job.DataDir, Splits.Train);
        var validation = Read(job.Format, job.DataDir, Splits.Validation);
        double lr = job.LearningRate ?? StrategyDefaults.LearningRate(job.Strategy);
        Directory.CreateDirectory(job.OutDir);
        var methods = job.MethodOptions.Methods(TowerLayout.Blip, text => s.Tokenizer.Encode(text, int.MaxValue));
        var (report, result, fitted) = Train(model, job.Strategy, methods, lr, train, validation, batcher,
            job.Train with { LogPath = Path.Combine(job.OutDir, "log.jsonl") }, device, progress, cancel);
        var test = job.ScoreTest.Count == 0 ? [] : Read(job.Format, job.DataDir, Splits.Test);
        var tests = job.ScoreTest.Select(o => new InMemoryTest(o, null,
            ReportEvaluation.Predict(model, test, fitted, o.ApplyTo(options.Decoding), device, options.BatchSize))).ToList();
        var strategy = TuningStrategy.Parse(job.Strategy, TowerLayout.Blip, methods);
        var adapter = VqaJobs.SaveAdapter(model, strategy, Path.Combine(job.OutDir, "adapter"));
        bool adapterRequired = TrainedOutputs.Finalize(model, strategy);
        BlipModelFolder.Save(model, Path.Combine(job.OutDir, "model"), Path.Combine(job.ModelDir, BlipModelFolder.VocabFile));
        var summary = new JsonObject
        {
            ["task"] = "report", ["strategy"] = job.Strategy, ["learning_rate"] = lr, ["trainable"] = report.Trainable, ["total"] = report.Total,
            ["steps"] = result.Steps, ["train_seconds"] = result.TrainSeconds, ["steps_per_second"] = result.StepsPerSecond,
            ["peak_memory_bytes"] = result.PeakMemoryBytes, ["best_validation_bleu4"] = result.BestValidation, ["best_step"] = result.BestStep,
            ["towers"] = report.ToJson()["towers"]!.DeepClone(), ["adapter"] = adapter, [TrainedOutputs.AdapterRequiredKey] = adapterRequired, ["load"] = load.Describe(),
            ["options"] = OptionsJson(options), ["data_wait_seconds"] = result.DataWaitSeconds, ["reproducibility"] = Reproducibility.Settings?.DeepClone(),
        };
        AtomicFile.WriteAllText(Path.Combine(job.OutDir, "train_summary.json"), summary.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        return new FineTuneSummary(report, result, lr, job.OutDir, "report") { Tests = tests, Load = load };
    }

    /// <summary>`medpeft eval --task report`: generate and score one split.</summary>
    public static (ReportScores Scores, IReadOnlyList<ReportPair> Predictions, CaptioningLoad Load) Evaluate(string modelDir, string dataDir, string format,
        string split, ReportTaskOptions? options = null, string device = "cpu", string? adapterDir = null)
    {
        var dev = TorchRuntime.ResolveDevice(device);
        options ??= ReportTaskOptions.For(format);
        using var s = CaptioningSession.Open(modelDir, dev, options);
        var (model, load) = (s.Model, s.Load);
        if (adapterDir is not null) PeftAdapters.Load(model, adapterDir);
        var batcher = FitPositions(s.Batcher, model);
        var samples = Read(format, dataDir, split);
        var pairs = ReportEvaluation.Predict(model, samples, batcher, options.Decoding, dev, options.BatchSize);
        return (ReportMetrics.Compute(pairs), pairs, load);
    }

    public static JsonObject OptionsJson(ReportTaskOptions o) => new()
    {
        ["prompt"] = o.Prompt, ["views"] = o.Views, ["cleaning"] = o.Cleaning.ToString(), ["max_words"] = o.MaxWords,
        ["num_beams"] = o.Decoding.NumBeams, ["max_new_tokens"] = o.Decoding.MaxNewTokens, ["min_new_tokens"] = o.Decoding.MinNewTokens,
        ["normalization"] = o.Normalization, ["augmentation"] = VqaJobs.AugmentationJson(o.Augmentation),
    };

    static List<ReportSample> Read(string format, string dir, string split) => DatasetFormats.ReadReports(format, dir, split).ToList();

    /// <summary>What every report job starts from: the captioning model of a folder (a VQA folder's text_encoder
    /// dropped), its tokenizer, the folder's image processor and a report batcher (augmentation seeded with
    /// <paramref name="seed"/> when training).</summary>
    sealed class CaptioningSession : IDisposable
    {
        public required BlipTokenizer Tokenizer { get; init; }
        public required BlipForConditionalGeneration Model { get; init; }
        public required CaptioningLoad Load { get; init; }
        public required ImageCache Images { get; init; }
        public required ReportBatcher Batcher { get; init; }

        public static CaptioningSession Open(string dir, Device device, ReportTaskOptions options, long? seed = null)
        {
            var tokenizer = BlipModelFolder.LoadTokenizer(dir);
            var (model, load) = BlipModelFolder.LoadCaptioning(dir, device, Precision.Resolve(options.DType, dir));
            var images = new ImageCache(ImageProcessor.ForFolder(dir, model.Config.VisionConfig.ImageSize, Normalization.Get(options.Normalization)));
            var batcher = seed is long s
                ? new ReportBatcher(tokenizer, images, options, model.Config.TextConfig.MaxPositionEmbeddings) { AugmentationSeed = s }
                : new ReportBatcher(tokenizer, images, options, model.Config.TextConfig.MaxPositionEmbeddings);
            return new CaptioningSession { Tokenizer = tokenizer, Model = model, Load = load, Images = images, Batcher = batcher };
        }

        public void Dispose() { Images.Dispose(); Model.Dispose(); }
    }
}
