using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using MedPeft.Data;
using MedPeft.Data.Synthetic;
using MedPeft.Evaluation;
using MedPeft.Models;
using MedPeft.Models.Blip;
using MedPeft.Training;
using MedPeft.Tuning;
using TorchSharp;
using static TorchSharp.torch;

namespace MedPeft.Experiments;

public sealed record StudyOptions
{
    public bool Quick { get; init; }
    /// <summary>Where the benchmark and the pretrained model are cached between runs.</summary>
    public string CacheDir { get; init; } = DefaultCacheDir();
    public string? OutDir { get; init; }
    public string Device { get; init; } = "cpu";
    public long Seed { get; init; } = 42;
    public IReadOnlyList<string> Strategies { get; init; } = ["full", "ln", "ffn", "attn", "lora"];
    /// <summary>Adds "full (random init)": the same fine-tuning without pretraining, to show what pretraining buys.</summary>
    public bool IncludeRandomInit { get; init; } = true;
    public int? Epochs { get; init; }
    /// <summary>Overrides every strategy's default learning rate (for sweeps).</summary>
    public double? LearningRate { get; init; }

    public static string DefaultCacheDir() =>
        Environment.GetEnvironmentVariable("MEDPEFT_CACHE") is { Length: > 0 } env ? env
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache", "medpeft");
}

/// <summary>One row of the study table.</summary>
public sealed record StudyRow(string Strategy, string Kind, long Trainable, long Total, VqaScores Test, double? BestValidation,
    double LearningRate, int Steps, double TrainSeconds, double StepsPerSecond, long PeakMemoryBytes)
{
    public double TrainableShare => Total == 0 ? 0 : 100.0 * Trainable / Total;

    public JsonObject ToJson() => new()
    {
        ["strategy"] = Strategy,
        ["kind"] = Kind,
        ["trainable"] = Trainable,
        ["total"] = Total,
        ["trainable_percent"] = TrainableShare,
        ["closed_acc"] = Json(Test.ClosedAccuracy),
        ["open_acc"] = Json(Test.OpenAccuracy),
        ["overall_acc"] = Json(Test.OverallAccuracy),
        ["open_token_recall"] = Json(Test.OpenTokenRecall),
        ["closed_count"] = Test.Closed,
        ["open_count"] = Test.Open,
        ["best_validation_acc"] = BestValidation is double v ? Json(v) : null,
        ["learning_rate"] = LearningRate,
        ["steps"] = Steps,
        ["train_seconds"] = TrainSeconds,
        ["steps_per_second"] = StepsPerSecond,
        ["peak_memory_bytes"] = PeakMemoryBytes,
    };

    static JsonNode? Json(double x) => double.IsFinite(x) ? JsonValue.Create(x) : null;
}

public sealed record PretrainSummary(string Dir, bool Cached, IReadOnlyList<(int Step, double Loss)> LossCurve, double Seconds);

public sealed record StudyResult(IReadOnlyList<StudyRow> Rows, PretrainSummary Pretrain, string BenchDir, double Seconds);

/// <summary>What the study tells its caller while it runs (the CLI draws progress bars from it).</summary>
public interface IStudyObserver
{
    void Stage(string message);
    IProgress<TrainProgress>? Training(string name);
    void Row(StudyRow row);
}

/// <summary>The embedded study: generate the synthetic benchmark (cached), pretrain the tiny BLIP on its captions
/// (cached), then fine-tune a copy per strategy on the Med-VQA split, select on validation, score on test.</summary>
public sealed class EmbeddedStudy(StudyOptions options, IStudyObserver observer)
{
    /// <summary>Study hyper-parameters for one size. Batch 32, AdamW wd 0.05, cosine; pretraining mixes
    /// captioning and masked-span infilling on a separate image pool.</summary>
    sealed record Plan(SyntheticBenchOptions Bench, int PretrainEpochs, int FineTuneEpochs, int ValidationLimit, int BatchSize);

    static readonly Plan Full = new(SyntheticBenchOptions.Default, PretrainEpochs: 7, FineTuneEpochs: 5, ValidationLimit: 300, BatchSize: 32);
    static readonly Plan QuickPlan = new(SyntheticBenchOptions.Quick, PretrainEpochs: 4, FineTuneEpochs: 3, ValidationLimit: 80, BatchSize: 32);

    public const string CaptionPrompt = "describe the image .";

    /// <summary>Names the pretraining recipe in the cache path; bump it when the recipe changes.</summary>
    const string PretrainRecipe = "r2";

    public StudyResult Run(CancellationToken cancel = default)
    {
        var clock = Stopwatch.StartNew();
        var plan = options.Quick ? QuickPlan : Full;
        var device = TorchRuntime.ResolveDevice(options.Device);

        observer.Stage("synthetic benchmark");
        var benchDir = Path.Combine(options.CacheDir, $"bench-{(options.Quick ? "quick" : "default")}");
        SyntheticBench.EnsureGenerated(benchDir, plan.Bench);
        var vocabPath = Path.Combine(benchDir, "vocab.txt");
        if (!File.Exists(vocabPath)) BlipTokenizer.WriteVocabulary(SyntheticBench.Vocabulary(plan.Bench), vocabPath);
        var tokenizer = new BlipTokenizer(vocabPath);
        var train = SlakeReader.Read(benchDir, Splits.Train).ToList();
        var validation = SlakeReader.Read(benchDir, Splits.Validation).Take(plan.ValidationLimit).ToList();
        var test = SlakeReader.Read(benchDir, Splits.Test).ToList();
        var config = BlipPresets.Tiny(tokenizer.VocabSize, tokenizer.DecId, tokenizer.SepId, tokenizer.PadId, plan.Bench.ImageSize);
        using var images = new ImageCache(new ImageProcessor(config.VisionConfig.ImageSize, Normalization.Blip));
        var batcher = new VqaBatcher(tokenizer, images, maxAnswerTokens: 40);
        images.Preload(train.Concat(validation).Concat(test).Select(s => s.ImagePath));

        var pretrain = EnsurePretrained(plan, benchDir, vocabPath, config, batcher, device, cancel);
        var rows = new List<StudyRow>();
        void Add(StudyRow r) { rows.Add(r); observer.Row(r); WriteResults(rows); }

        observer.Stage("zero-shot (pretrained, untuned)");
        using (var zeroShot = BlipModelFolder.Load(pretrain.Dir, device))
        {
            PeakMemory.Reset();
            long total = ModelUtils.UniqueParameters(zeroShot).Sum(p => p.Param.numel());
            var scores = VqaEvaluation.Evaluate(zeroShot, test, batcher, VqaEvaluation.MissDecoding, device);
            Add(new StudyRow("zero-shot", "pretrained, untuned", 0, total, scores, null, 0, 0, 0, 0, PeakMemory.Bytes()));
        }

        foreach (var strategy in options.Strategies)
        {
            cancel.ThrowIfCancellationRequested();
            observer.Stage($"fine-tune: {strategy}");
            using var model = BlipModelFolder.Load(pretrain.Dir, device);
            Add(FineTune(strategy, strategy, "pretrained", model, plan, train, validation, test, batcher, device, cancel));
        }

        if (options.IncludeRandomInit)
        {
            observer.Stage("fine-tune: full from random init");
            TorchRuntime.Seed(options.Seed);
            using var scratch = ModelUtils.On(device, () => new BlipForQuestionAnswering(config));
            BlipInit.Apply(scratch);
            Add(FineTune("full (random init)", "full", "random init", scratch, plan, train, validation, test, batcher, device, cancel));
        }
        return new StudyResult(rows, pretrain, benchDir, clock.Elapsed.TotalSeconds);
    }

    StudyRow FineTune(string name, string strategySpec, string kind, BlipForQuestionAnswering model, Plan plan,
        List<VqaSample> train, List<VqaSample> validation, List<VqaSample> test, VqaBatcher batcher, Device device, CancellationToken cancel)
    {
        TorchRuntime.Seed(options.Seed);
        var report = TuningStrategy.Parse(strategySpec, TowerLayout.Blip).Apply(model);
        double lr = options.LearningRate ?? StrategyDefaults.LearningRate(strategySpec);
        var greedy = VqaEvaluation.MissDecoding with { NumBeams = 1 };
        var result = Trainer.Run(model, train, batch => model.forward(batcher.Batch(batch, device)).Loss!,
            new TrainOptions
            {
                Epochs = options.Epochs ?? plan.FineTuneEpochs, BatchSize = plan.BatchSize, LearningRate = lr, Seed = options.Seed,
                LogPath = options.OutDir is null ? null : Path.Combine(Directory.CreateDirectory(Path.Combine(options.OutDir, "runs", Slug(name))).FullName, "log.jsonl"),
            },
            // Selection on validation uses greedy decoding (cheaper); test uses MISS's beam search.
            validate: () => VqaEvaluation.Evaluate(model, validation, batcher, greedy, device).OverallAccuracy,
            progress: observer.Training(name), cancel: cancel);
        var scores = VqaEvaluation.Evaluate(model, test, batcher, VqaEvaluation.MissDecoding, device);
        return new StudyRow(name, kind, report.Trainable, report.Total, scores, result.BestValidation, lr, result.Steps,
            result.TrainSeconds, result.StepsPerSecond, result.PeakMemoryBytes);
    }

    /// <summary>Pretrains the tiny model once per benchmark/config/seed and caches it as an HF-layout folder.</summary>
    PretrainSummary EnsurePretrained(Plan plan, string benchDir, string vocabPath, BlipConfig config, VqaBatcher batcher, Device device, CancellationToken cancel)
    {
        var dir = Path.Combine(benchDir, $"pretrained-{PretrainRecipe}-s{options.Seed}-e{plan.PretrainEpochs}");
        var curvePath = Path.Combine(dir, "pretrain_loss.json");
        if (BlipModelFolder.IsModelFolder(dir) && File.Exists(curvePath))
        {
            observer.Stage("pretrained model: cached");
            var cached = JsonSerializer.Deserialize<double[][]>(File.ReadAllText(curvePath))!;
            return new PretrainSummary(dir, true, cached.Select(p => ((int)p[0], p[1])).ToList(), 0);
        }
        observer.Stage("pretraining on captions");
        var examples = PretrainingExamples(benchDir, SyntheticBench.Plan(plan.Bench), options.Seed);
        batcher.Images.Preload(examples.Select(e => e.ImagePath));
        TorchRuntime.Seed(options.Seed);
        using var model = ModelUtils.On(device, () => new BlipForQuestionAnswering(config));
        BlipInit.Apply(model);
        TuningStrategy.Parse("full", TowerLayout.Blip).Apply(model);
        var result = Trainer.Run(model, examples, batch => model.forward(batcher.Batch(batch, device)).Loss!,
            new TrainOptions { Epochs = plan.PretrainEpochs, BatchSize = plan.BatchSize, LearningRate = 5e-4, Seed = options.Seed, LogEvery = 25 },
            progress: observer.Training("pretrain"), cancel: cancel);
        var curve = JsonSerializer.Serialize(result.LossCurve.Select(p => new[] { p.Step, p.Loss }).ToArray());
        BlipModelFolder.Save(model, dir, vocabPath, new Dictionary<string, string> { ["pretrain_loss.json"] = curve });
        return new PretrainSummary(dir, false, result.LossCurve, result.TrainSeconds);
    }

    /// <summary>Three image-grounded objectives over the captioned pool (never the Med-VQA images):
    /// captioning (prompt → whole caption), masked-span infilling (caption with one span replaced by [MASK] → that
    /// span) and instruction-style questions on the general families only (<see cref="PretrainingQuestions"/>), so
    /// both text towers and the decoder see image-dependent text and the question format before fine-tuning.</summary>
    public static List<VqaSample> PretrainingExamples(string benchDir, SyntheticBenchPlan plan, long seed)
    {
        var rng = new Random((int)seed);
        var list = new List<VqaSample>();
        int i = 0;
        foreach (var (image, caption) in ReadCaptions(benchDir))
        {
            list.Add(new VqaSample($"cap-{i}", image, CaptionPrompt, caption, null));
            var words = caption.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (words.Length >= 3)
            {
                int len = rng.Next(1, Math.Min(3, words.Length - 1) + 1);
                int start = rng.Next(0, words.Length - len + 1);
                var masked = string.Join(' ', words.Take(start).Append("[MASK]").Concat(words.Skip(start + len)));
                list.Add(new VqaSample($"fill-{i}", image, masked, string.Join(' ', words.Skip(start).Take(len)), null));
            }
            i++;
        }
        int q = 0;
        foreach (var (image, question, answer) in PretrainingQuestions.Generate(plan))
            list.Add(new VqaSample($"qa-{q++}", Path.Combine(benchDir, image), question, answer, null));
        return list;
    }

    /// <summary>captions.jsonl: one {"image": path relative to the benchmark folder, "caption": text} per line.</summary>
    static IEnumerable<(string Image, string Caption)> ReadCaptions(string benchDir) =>
        JsonLines.Read(SyntheticBench.CaptionsFile(benchDir)).Select(l => (Path.Combine(benchDir, l.String("image")!), l.String("caption")!));

    void WriteResults(List<StudyRow> rows)
    {
        if (options.OutDir is null) return;
        var array = new JsonArray(rows.Select(r => (JsonNode)r.ToJson()).ToArray());
        AtomicFile.WriteAllText(Path.Combine(options.OutDir, "results.json"), array.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
    }

    static string Slug(string s) => new(s.Select(c => char.IsLetterOrDigit(c) ? c : '-').ToArray());
}
