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

/// <summary>Where the embedded benchmark and its pretrained model are cached between runs.</summary>
public static class StudyCache
{
    public static string DefaultDir() =>
        Environment.GetEnvironmentVariable("MEDPEFT_CACHE") is { Length: > 0 } env ? env
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache", "medpeft");
}

/// <summary>An exclusive lock on a file (flock on Linux via FileShare.None), held while the cache is filled.</summary>
sealed class CacheLock : IDisposable
{
    readonly FileStream _file;
    CacheLock(FileStream file) => _file = file;
    public static CacheLock Acquire(string path, CancellationToken cancel)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        while (true)
        {
            try { return new CacheLock(new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None)); }
            catch (IOException) { cancel.ThrowIfCancellationRequested(); Thread.Sleep(500); }
        }
    }
    public void Dispose() => _file.Dispose();
}

public sealed record PretrainSummary(string Dir, bool Cached, IReadOnlyList<(int Step, double Loss)> LossCurve, double Seconds);

/// <summary>The embedded benchmark for one size and pretraining seed: the synthetic benchmark (generated once,
/// cached), the tiny BLIP/MISS-architecture model pretrained on its captions (cached), the Med-VQA splits with their
/// images preloaded — and one study run on it (<see cref="Run"/>). A study process keeps one per (size, seed).</summary>
public sealed class EmbeddedStudy : IDisposable
{
    public const string CaptionPrompt = "describe the image .";

    /// <summary>Names the pretraining recipe in the cache path; bump it when the recipe changes.</summary>
    const string PretrainRecipe = "r2";

    readonly EmbeddedPlan _plan;
    readonly long _seed;
    readonly Device _device;
    readonly ImageCache _images;
    readonly string _cacheDir;
    readonly string _size;
    public EmbeddedPlan Plan => _plan;
    public Device Device => _device;
    public string BenchDir { get; }
    public BlipConfig Config { get; }
    public VqaBatcher Batcher { get; }
    public List<VqaSample> TrainSet { get; }
    public List<VqaSample> ValidationSet { get; }
    public List<VqaSample> TestSet { get; }
    /// <summary>Test qid → question family (content type), for per-family accuracies.</summary>
    public Dictionary<string, string> TestFamilies { get; }
    public PretrainSummary Pretrain { get; }

    /// <summary>Generates or loads the benchmark and the pretrained model; <paramref name="stage"/> and
    /// <paramref name="progress"/> report what it is doing (pretraining takes minutes the first time).</summary>
    public EmbeddedStudy(string size, long pretrainSeed, string cacheDir, string device, Action<string>? stage = null,
        Func<string, IProgress<TrainProgress>?>? progress = null, CancellationToken cancel = default)
    {
        _plan = EmbeddedPlan.ForSize(size);
        _seed = pretrainSeed;
        _cacheDir = cacheDir;
        _size = size;
        _device = TorchRuntime.ResolveDevice(device);
        stage?.Invoke("synthetic benchmark");
        BenchDir = Path.Combine(cacheDir, BenchFolder(size));
        // Two study processes starting on an empty cache: one generates and pretrains, the other waits for it.
        using var cacheLock = CacheLock.Acquire(Path.Combine(cacheDir, $"{BenchFolder(size)}-s{pretrainSeed}.lock"), cancel);
        SyntheticBench.EnsureGenerated(BenchDir, _plan.Bench);
        var vocabPath = Path.Combine(BenchDir, "vocab.txt");
        if (!File.Exists(vocabPath)) BlipTokenizer.WriteVocabulary(SyntheticBench.Vocabulary(_plan.Bench), vocabPath);
        var tokenizer = new BlipTokenizer(vocabPath);
        TrainSet = SlakeReader.Read(BenchDir, Splits.Train).ToList();
        ValidationSet = SlakeReader.Read(BenchDir, Splits.Validation).ToList();
        TestSet = SlakeReader.Read(BenchDir, Splits.Test).ToList();
        TestFamilies = QuestionFamilies.Read(BenchDir, Splits.Test);
        Config = BlipPresets.Tiny(tokenizer.VocabSize, tokenizer.DecId, tokenizer.SepId, tokenizer.PadId, _plan.Bench.ImageSize);
        _images = new ImageCache(new ImageProcessor(Config.VisionConfig.ImageSize, Normalization.Blip));
        Batcher = new VqaBatcher(tokenizer, _images, maxAnswerTokens: 40);
        _images.Preload(TrainSet.Concat(ValidationSet.Take(_plan.ValidationLimit)).Concat(TestSet).Select(s => s.ImagePath));
        Pretrain = EnsurePretrained(vocabPath, stage, progress, cancel);
    }

    public void Dispose() => _images.Dispose();

    /// <summary>The cache folder of a benchmark size: generated images (drawn with glibc's math) and the models
    /// pretrained on them differ between the default and the reproducible mode, so each mode has its own.</summary>
    public static string BenchFolder(string size) => Reproducibility.Settings is null ? $"bench-{size}" : $"bench-{size}-reproducible";

    static readonly Dictionary<(string, string, long, string), EmbeddedStudy> Instances = new();

    /// <summary>The benchmark of an embedded run (its dataset's size, its model's pretraining seed), made once per
    /// process and shared by every task that runs on it (Med-VQA and report generation): the benchmark, the images
    /// and the pretrained model are loaded once.</summary>
    public static EmbeddedStudy For(StudyRun run, RunContext ctx)
    {
        if (!run.Model.IsEmbedded)
            throw new MedPeftException($"{run.Method}: the embedded benchmark runs with models `embedded` or `embedded-random` (its vocabulary and image size are its own), not {run.Model.Name}");
        var key = (run.Dataset.Dir!, ctx.CacheDir, run.Model.PretrainSeed, ctx.Device);
        lock (Instances)
        {
            if (!Instances.TryGetValue(key, out var bench))
                Instances[key] = bench = new EmbeddedStudy(run.Dataset.Dir!, run.Model.PretrainSeed, ctx.CacheDir, ctx.Device, ctx.Stage,
                    name => name == "pretrain" ? ctx.Progress : null, ctx.Cancel);
            return bench;
        }
    }

    /// <summary>The benchmark's report-generation split (IU-Xray layout, two views per study), cut to the plan's
    /// report sizes (the first N studies of each split, so a smaller plan is a prefix of a larger one).</summary>
    public (List<ReportSample> Train, List<ReportSample> Validation, List<ReportSample> Test) ReportSplits()
    {
        var root = SyntheticBench.IuXrayRoot(BenchDir);
        List<ReportSample> Read(string split, int n) => DatasetFormats.ReadReports(DatasetFormats.IuXray, root, split).Take(n).ToList();
        return (Read(Splits.Train, _plan.ReportTrain), Read(Splits.Validation, _plan.ReportValidation), Read(Splits.Test, _plan.ReportTest));
    }

    /// <summary>The model folder (VQA layout) a run starts from: the cached pretrained model, or — for
    /// <c>embedded-random</c> — the same architecture from random init seeded with the pretraining seed (the weights
    /// <see cref="Model"/> builds), saved once next to it so folder-based jobs (report generation) can load it.</summary>
    public string ModelDir(StudyModel model)
    {
        if (model.Preset == StudyModel.Embedded) return Pretrain.Dir;
        var dir = Path.Combine(BenchDir, $"random-init-s{_seed}");
        using var cacheLock = CacheLock.Acquire(Path.Combine(_cacheDir, $"{BenchFolder(_size)}-s{_seed}.lock"), default);
        if (!BlipModelFolder.IsModelFolder(dir))
        {
            using var scratch = Model(model);
            BlipModelFolder.Save(scratch, dir, Path.Combine(BenchDir, "vocab.txt"));
        }
        return dir;
    }

    /// <summary>The model a run starts from: the cached pretrained one, or the same architecture from random init
    /// seeded with the pretraining seed.</summary>
    public BlipForQuestionAnswering Model(StudyModel model)
    {
        if (model.Preset == StudyModel.Embedded) return BlipModelFolder.Load(Pretrain.Dir, _device);
        TorchRuntime.Seed(_seed);
        var scratch = ModelUtils.On(_device, () => new BlipForQuestionAnswering(Config));
        BlipInit.Apply(scratch);
        return scratch;
    }

    /// <summary>One run: zero-shot (strategy none) scores the untuned model; otherwise fine-tune with the strategy
    /// (LR from the run, the strategy default, or an LR range test), select the best step on validation (greedy
    /// decoding, cheaper), score test with MISS's decoding (beam 3).</summary>
    public RunOutcome Run(StudyRun run, RunContext ctx)
    {
        var validation = ValidationSet.Take(run.Training.ValidationLimit > 0 ? run.Training.ValidationLimit : _plan.ValidationLimit).ToList();
        var test = run.Training.TestLimit > 0 ? TestSet.Take(run.Training.TestLimit).ToList() : TestSet;
        var greedy = VqaEvaluation.MissDecoding with { NumBeams = 1 };
        if (run.Strategy.IsZeroShot)
        {
            using var untuned = Model(run.Model);
            PeakMemory.Reset();
            var clock = Stopwatch.StartNew();
            long total = ModelUtils.UniqueParameters(untuned).Sum(p => p.Param.numel());
            var metrics = TestMetrics(untuned, test);
            return RunOutcome.ZeroShot(total, metrics, PeakMemory.Bytes(), clock.Elapsed.TotalSeconds);
        }

        TrainResult Train(BlipForQuestionAnswering model, double lr, int? maxSteps, List<VqaSample> val, string? log, IProgress<TrainProgress>? progress) =>
            Trainer.Run(model, TrainSet, batch => model.forward(Batcher.Batch(batch, _device)).Loss!,
                new TrainOptions { Epochs = run.Training.Epochs, MaxSteps = maxSteps ?? run.Training.MaxSteps, BatchSize = run.Training.BatchSize, LearningRate = lr, Seed = run.Seed, LogPath = log },
                validate: () => VqaEvaluation.Evaluate(model, val, Batcher, greedy, _device).OverallAccuracy,
                progress: progress, cancel: ctx.Cancel);

        IReadOnlyList<LrTrial> trials = [];
        double rate;
        if (run.LrAuto)
        {
            (rate, trials) = LrSweep.Pick(run.Strategy.Spec, run.Training.LrSweepSteps, (lr, steps) =>
            {
                using var m = Model(run.Model);
                TorchRuntime.Seed(run.Seed);
                TuningStrategy.Parse(run.Strategy.Spec, TowerLayout.Blip, run.Strategy.Methods(TowerLayout.Blip)).Apply(m);
                return LrSweep.Trial(lr, Train(m, lr, steps, validation.Take(LrSweep.ValidationQuestions).ToList(), null, null));
            }, ctx.Stage);
        }
        else rate = run.LearningRate ?? StrategyDefaults.LearningRate(run.Strategy.Spec);

        using var model = Model(run.Model);
        TorchRuntime.Seed(run.Seed);
        var report = TuningStrategy.Parse(run.Strategy.Spec, TowerLayout.Blip, run.Strategy.Methods(TowerLayout.Blip)).Apply(model);
        var result = Train(model, rate, null, validation, ctx.LogPath, ctx.Progress);
        return new RunOutcome(report.Trainable, report.Total, rate, trials, result, TestMetrics(model, test));
    }

    /// <summary>Test scores with MISS's decoding, and the accuracy per question family ("families").</summary>
    Dictionary<string, JsonObject> TestMetrics(BlipForQuestionAnswering model, List<VqaSample> test)
    {
        var predictions = VqaEvaluation.Predict(model, test, Batcher, VqaEvaluation.MissDecoding, _device);
        return new() { ["test"] = RunOutcome.Scores(VqaScorer.Score(predictions)), ["families"] = QuestionFamilies.Accuracies(predictions, TestFamilies) };
    }

    /// <summary>Pretrains the tiny model once per benchmark/config/seed and caches it as an HF-layout folder
    /// (written atomically by BlipModelFolder.Save, so a killed pretraining is redone, never half-used).</summary>
    PretrainSummary EnsurePretrained(string vocabPath, Action<string>? stage, Func<string, IProgress<TrainProgress>?>? progress, CancellationToken cancel)
    {
        var dir = Path.Combine(BenchDir, $"pretrained-{PretrainRecipe}-s{_seed}-e{_plan.PretrainEpochs}");
        var curvePath = Path.Combine(dir, "pretrain_loss.json");
        if (BlipModelFolder.IsModelFolder(dir) && File.Exists(curvePath))
        {
            stage?.Invoke("pretrained model: cached");
            var cached = JsonSerializer.Deserialize<double[][]>(File.ReadAllText(curvePath))!;
            return new PretrainSummary(dir, true, cached.Select(p => ((int)p[0], p[1])).ToList(), 0);
        }
        stage?.Invoke("pretraining on captions");
        var examples = PretrainingExamples(BenchDir, SyntheticBench.Plan(_plan.Bench), _seed);
        Batcher.Images.Preload(examples.Select(e => e.ImagePath));
        TorchRuntime.Seed(_seed);
        using var model = ModelUtils.On(_device, () => new BlipForQuestionAnswering(Config));
        BlipInit.Apply(model);
        TuningStrategy.Parse("full", TowerLayout.Blip).Apply(model);
        var result = Trainer.Run(model, examples, batch => model.forward(Batcher.Batch(batch, _device)).Loss!,
            new TrainOptions { Epochs = _plan.PretrainEpochs, BatchSize = _plan.BatchSize, LearningRate = 5e-4, Seed = _seed, LogEvery = 25 },
            progress: progress?.Invoke("pretrain"), cancel: cancel);
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
}
