using System.Text.Json.Nodes;
using MedPeft.Evaluation;
using MedPeft.Training;

namespace MedPeft.Experiments;

/// <summary>What a run gets from the study runner: where to log, progress, cancellation, stage messages.</summary>
public sealed record RunContext(string RunDir, string CacheDir, string Device, IProgress<TrainProgress>? Progress, Action<string> Stage, CancellationToken Cancel)
{
    public string LogPath => Path.Combine(RunDir, "log.jsonl");
}

/// <summary>One learning rate tried by the LR range test: best validation accuracy (null if it diverged or had no
/// validation) and the last logged training loss.</summary>
public sealed record LrTrial(double LearningRate, double? Validation, double FinalLoss);

/// <summary>What one run measured. Metrics are keyed by split / test set ("test", "extra:NAME"), each a JSON object
/// of numbers named by the task (VQA: <see cref="Scores"/>; report generation: BLEU_1..4, ROUGE_L, CIDEr, …).</summary>
public sealed record RunOutcome(long Trainable, long Total, double LearningRate, IReadOnlyList<LrTrial> LrSweep, TrainResult? Train,
    Dictionary<string, JsonObject> Metrics)
{
    public long? ZeroShotPeak { get; init; }
    public double ZeroShotSeconds { get; init; }

    public static RunOutcome ZeroShot(long total, Dictionary<string, JsonObject> metrics, long peak, double seconds) =>
        new(0, total, 0, [], null, metrics) { ZeroShotPeak = peak, ZeroShotSeconds = seconds };

    /// <summary>The stored result JSON (the schema docs/study-files.md describes).</summary>
    public JsonObject ToJson(StudyRun run, double wallSeconds, string codeVersion) => new()
    {
        ["method"] = run.Method,
        ["strategy"] = run.Strategy.Spec,
        ["model"] = run.Model.Name,
        ["dataset"] = run.Dataset.Name,
        ["task"] = run.Dataset.Task,
        ["seed"] = run.Seed,
        ["learning_rate"] = LearningRate,
        ["learning_rate_source"] = run.Strategy.IsZeroShot ? null : run.LrAuto ? "lr-sweep" : run.LearningRate is null ? "strategy default" : "study",
        ["lr_sweep"] = LrSweep.Count == 0 ? null : new JsonArray(LrSweep.Select(t => (JsonNode)new JsonObject
        {
            ["learning_rate"] = t.LearningRate, ["validation"] = Num(t.Validation), ["final_loss"] = Num(t.FinalLoss),
        }).ToArray()),
        ["trainable"] = Trainable,
        ["total"] = Total,
        ["trainable_percent"] = Total == 0 ? 0 : 100.0 * Trainable / Total,
        ["steps"] = Train?.Steps ?? 0,
        ["best_step"] = Train?.BestStep,
        [TrainedOutputs.ValidationKey(run.Dataset.Task)] = Num(Train?.BestValidation),
        ["train_seconds"] = Train?.TrainSeconds ?? ZeroShotSeconds,
        ["steps_per_second"] = Train?.StepsPerSecond ?? 0,
        ["peak_memory_bytes"] = Train?.PeakMemoryBytes ?? ZeroShotPeak ?? 0,
        ["wall_seconds"] = wallSeconds,
        ["code_version"] = codeVersion,
        ["reproducibility"] = Reproducibility.Settings?.DeepClone(),
        ["metrics"] = new JsonObject(Metrics.Select(m => KeyValuePair.Create(m.Key, (JsonNode?)m.Value.DeepClone()))),
        ["loss_curve"] = new JsonArray((Train?.LossCurve ?? []).Select(p => (JsonNode)new JsonArray(p.Step, p.Loss)).ToArray()),
    };

    public static JsonObject Scores(VqaScores s) => new()
    {
        ["closed_acc"] = Num(s.ClosedAccuracy), ["open_acc"] = Num(s.OpenAccuracy), ["overall_acc"] = Num(s.OverallAccuracy),
        ["open_token_recall"] = Num(s.OpenTokenRecall), ["closed_count"] = s.Closed, ["open_count"] = s.Open,
    };

    static JsonNode? Num(double? x) => x is double v && double.IsFinite(v) ? JsonValue.Create(v) : null;
}

/// <summary>A study task: how one run of it is executed. Registered by name in <see cref="StudyTasks"/>.</summary>
public interface IStudyTask
{
    string Name { get; }
    RunOutcome Run(StudyRun run, RunContext context);
}

/// <summary>The tasks a study can run: <c>vqa</c> (Med-VQA accuracies) and <c>report</c> (report generation, BLEU-1..4,
/// ROUGE-L, CIDEr-D). A new task is one <see cref="IStudyTask"/> registered in <see cref="Available"/>; a known name
/// without a runner is planned and its runs reported as skipped.</summary>
public static class StudyTasks
{
    public static readonly IReadOnlyList<string> Known = ["vqa", "report"];

    public static readonly Dictionary<string, Func<IStudyTask>> Available = new()
    {
        ["vqa"] = () => new VqaStudyTask(),
        ["report"] = () => new ReportStudyTask(),
    };

    public static bool IsAvailable(string task) => Available.ContainsKey(task);

    /// <summary>What every task checks before a run on a folder dataset: the model is a checkpoint folder (with an
    /// adapter merged in, <see cref="StudyModel.FolderFor"/>), and train/validation name the dataset's own splits (the
    /// jobs, <paramref name="jobs"/>, read those). Returns the folder the run starts from.</summary>
    public static string FolderRunModel(StudyRun run, RunContext ctx, string jobs)
    {
        if (run.Model.IsEmbedded) throw new MedPeftException($"{run.Method}: model {run.Model.Preset} only runs on the embedded benchmark (format: embedded)");
        var modelDir = run.Model.FolderFor(run.Method, run.Dataset.Name, ctx.CacheDir);
        foreach (var (field, split, canonical) in new[] { ("train", run.Dataset.Train, Data.Splits.Train), ("validation", run.Dataset.Validation, Data.Splits.Validation) })
            if (Data.DatasetFormats.CanonicalSplit(split) != canonical)
                throw new MedPeftException($"{run.Dataset.Name}.{field}: \"{split}\" — training reads the dataset's {canonical} split ({jobs}); other split names are not supported yet");
        return modelDir;
    }

    /// <summary>A run on a folder dataset, either task, through the same <see cref="FineTuning"/> calls as `medpeft
    /// train` / `medpeft eval`: zero-shot scores the folder; otherwise (after an LR range test when asked, its trials
    /// validated on <paramref name="sweepValidation"/> examples) train into the run folder and score what it saved
    /// (<see cref="TrainedOutputs.ForScoring"/>) on the test split and every extra test set with the folder's decoding.</summary>
    public static RunOutcome RunFolder(StudyRun run, RunContext ctx, string task, int sweepValidation, Func<EvalResult, JsonObject> scores)
    {
        foreach (var (name, format) in run.Dataset.ExtraTests.Select(x => ($"{run.Dataset.Name} test set {x.Name}", x.Format)).Prepend((run.Dataset.Name, run.Dataset.Format)))
            if (FineTuning.TaskOf(format) != task) throw new MedPeftException($"{name}: format {format} is not a {task} dataset");
        var modelDir = FolderRunModel(run, ctx, "FineTuning");
        long dropped = 0;
        Dictionary<string, JsonObject> Score(string dir, string? adapter)
        {
            JsonObject One(string dataDir, string format, string split)
            {
                var r = FineTuning.Evaluate(new EvalJob
                {
                    ModelDir = dir, AdapterDir = adapter, DataDir = dataDir, Format = format, Split = split, Task = task, Device = ctx.Device,
                    DType = run.Model.DType,
                });
                if (r.Load is { } load) dropped = load.DroppedParameters;
                return scores(r);
            }
            var metrics = new Dictionary<string, JsonObject> { ["test"] = One(run.Dataset.Dir!, run.Dataset.Format, run.Dataset.Test) };
            foreach (var extra in run.Dataset.ExtraTests) metrics[$"extra:{extra.Name}"] = One(extra.Dir, extra.Format, extra.Split);
            return metrics;
        }

        if (run.Strategy.IsZeroShot)
        {
            PeakMemory.Reset();
            var clock = System.Diagnostics.Stopwatch.StartNew();
            var metrics = Score(modelDir, null);
            long total;
            using (var m = Models.Presets.FromFolder(modelDir).BuildOnMeta())   // counted on the meta device: no weights loaded
                total = Models.ModelUtils.UniqueParameters(m).Sum(p => p.Param.numel());
            total -= dropped;   // BLIP reports: a VQA folder's text_encoder is not part of the captioning model
            return RunOutcome.ZeroShot(total, metrics, PeakMemory.Bytes(), clock.Elapsed.TotalSeconds);
        }

        VqaTrainJob Job(double? lr, string outDir, int? maxSteps, int validationLimit) => new()
        {
            ModelDir = modelDir, DataDir = run.Dataset.Dir!, Format = run.Dataset.Format, Task = task, Strategy = run.Strategy.Spec, OutDir = outDir,
            Device = ctx.Device, LearningRate = lr, ValidationLimit = validationLimit,
            MethodOptions = run.Strategy.ParseOptions(),   // every method's options, as `medpeft train` flags give them
            Train = run.Model.Apply(new TrainOptions { Epochs = run.Training.Epochs, MaxSteps = maxSteps ?? run.Training.MaxSteps, BatchSize = run.Training.BatchSize, Seed = run.Seed }),
        };
        var (rate, trials) = LrSweep.ForRun(run, ctx, (lr, dir, steps) => FineTuning.Train(Job(lr, dir, steps, sweepValidation), cancel: ctx.Cancel).Result);
        var summary = FineTuning.Train(Job(rate, ctx.RunDir, null, run.Training.ValidationLimit), ctx.Progress, ctx.Cancel);
        var (trained, adapter) = TrainedOutputs.ForScoring(ctx.RunDir);   // prompt-learning runs: base model/ + adapter/
        return new RunOutcome(summary.Trainable.Trainable, summary.Trainable.Total, summary.LearningRate, trials, summary.Result, Score(trained, adapter));
    }

    public static string WhyUnavailable(string task) => $"no runner registered for \"{task}\"";
}
