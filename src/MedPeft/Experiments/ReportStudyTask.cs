using System.Text.Json.Nodes;
using MedPeft.Data;
using MedPeft.Evaluation;
using MedPeft.Models.Blip;
using MedPeft.Training;
using MedPeft.Tuning;

namespace MedPeft.Experiments;

/// <summary>Report-generation runs of a study (BLEU-1..4, ROUGE-L, CIDEr-D on the test split, per split like VQA's
/// accuracies). On the embedded benchmark a run uses the shared <see cref="EmbeddedStudy"/> (same cache and
/// pretrained model as the Med-VQA runs) and its synthetic IU-Xray split: zero-shot scores the captioning model
/// initialised from the pretrained VQA folder (vision_model + text_decoder, text_encoder dropped) untuned; a strategy
/// fine-tunes it through <see cref="ReportJobs.FineTune"/>; <c>embedded-random</c> starts from the same architecture
/// at random init. On a folder dataset (iu-xray, mimic-cxr) it goes through the same code as
/// <c>medpeft train/eval --task report</c>: <see cref="ReportJobs"/> for BLIP folders, <see cref="LlavaJobs"/> for
/// LLaVA folders.</summary>
public sealed class ReportStudyTask : IStudyTask
{
    public string Name => "report";

    public RunOutcome Run(StudyRun run, RunContext ctx) => run.Dataset.IsEmbedded ? RunEmbedded(run, ctx) : RunFolder(run, ctx);

    /// <summary>The metrics object of one scored split: BLEU_1..4, ROUGE_L, CIDEr (ReportMetrics' keys), METEOR only
    /// when computed, otherwise the scorer's note saying why not.</summary>
    public static JsonObject Scores(ReportScores s, int reports)
    {
        var o = new JsonObject();
        foreach (var (k, v) in s.ToDictionary()) o[k] = v;
        if (s.MeteorNote is { } note) o["METEOR_note"] = note;
        o["reports"] = reports;
        return o;
    }

    /// <summary>Validation studies scored per trial of the LR range test (greedy BLEU-4).</summary>
    public const int SweepValidationStudies = 20;

    static RunOutcome RunEmbedded(StudyRun run, RunContext ctx)
    {
        var bench = EmbeddedStudy.For(run, ctx);
        var (train, validation, test) = bench.ReportSplits();
        if (run.Training.TestLimit > 0) test = test.Take(run.Training.TestLimit).ToList();
        // R2Gen's IU-Xray settings (two views, 59 words, beam 3, ≤ 60 new tokens) with the study's batch size.
        var options = ReportTaskOptions.For(DatasetFormats.IuXray) with { BatchSize = run.Training.BatchSize, ValidationLimit = run.Training.ValidationLimit };
        var dir = bench.ModelDir(run.Model);
        if (run.Strategy.IsZeroShot)
        {
            var z = ReportJobs.ZeroShot(dir, test, bench.Device, options);
            return RunOutcome.ZeroShot(z.Total, new() { ["test"] = Scores(z.Scores, z.Pairs.Count) }, z.PeakMemoryBytes, z.Seconds);
        }
        var methods = run.Strategy.Methods(TowerLayout.Blip);
        IReadOnlyList<LrTrial> trials = [];
        double rate;
        if (run.LrAuto)
            (rate, trials) = LrSweep.Pick(run.Strategy.Spec, run.Training.LrSweepSteps, (lr, steps) =>
                ReportJobs.SweepTrial(dir, run.Strategy.Spec, lr, steps, train, validation.Take(SweepValidationStudies).ToList(), bench.Device, run.Seed,
                    options, methods, ctx.Cancel), ctx.Stage);
        else rate = run.LearningRate ?? StrategyDefaults.LearningRate(run.Strategy.Spec);
        var r = ReportJobs.FineTune(dir, run.Strategy.Spec, rate, run.Training.Epochs, train, validation, test, bench.Device, run.Seed, options,
            ctx.Progress, ctx.LogPath, ctx.Cancel, methods, run.Training.MaxSteps);
        return new RunOutcome(r.Trainable, r.Total, rate, trials, r.Result, new() { ["test"] = Scores(r.Test, r.TestPredictions.Count) });
    }

    static RunOutcome RunFolder(StudyRun run, RunContext ctx)
    {
        if (DatasetFormats.TaskOf(run.Dataset.Format) != DatasetTask.Report)
            throw new MedPeftException($"{run.Dataset.Name}: format {run.Dataset.Format} is not a report dataset (iu-xray, mimic-cxr)");
        var modelDir = StudyTasks.FolderRunModel(run, ctx, "ReportJobs");
        bool llava = LlavaJobs.IsLlavaFolder(modelDir);
        if (!llava && !BlipModelFolder.IsModelFolder(modelDir))
            throw new MedPeftException($"{run.Method}: {modelDir} is neither a BLIP checkpoint folder (config.json + model.safetensors) nor a LLaVA folder");

        long droppedEncoder = 0;   // BLIP: text_encoder parameters of a VQA folder, not part of the captioning model
        Dictionary<string, JsonObject> Score(string dir, string? adapter)
        {
            JsonObject One(string dataDir, string format, string split)
            {
                if (DatasetFormats.TaskOf(format) != DatasetTask.Report)
                    throw new MedPeftException($"{run.Dataset.Name}: test set format {format} is not a report dataset (iu-xray, mimic-cxr)");
                if (llava)
                {
                    var (s, pairs) = LlavaJobs.EvaluateReports(dir, dataDir, format, split, null, ctx.Device, adapterDir: adapter, dtype: run.Model.DType);
                    return Scores(s, pairs.Count);
                }
                var (scores, preds, load) = ReportJobs.Evaluate(dir, dataDir, format, split, ReportTaskOptions.For(format) with { DType = run.Model.DType }, ctx.Device, adapter);
                droppedEncoder = load.DroppedParameters;
                return Scores(scores, preds.Count);
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
            total -= droppedEncoder;
            return RunOutcome.ZeroShot(total, metrics, PeakMemory.Bytes(), clock.Elapsed.TotalSeconds);
        }

        var methodOptions = run.Strategy.ParseOptions();   // every method's options, as `medpeft train` flags give them
        // The same jobs as `medpeft train --task report`: LLaVA folders through VqaJobs (which dispatches to LlavaJobs,
        // report formats included), BLIP folders through ReportJobs.
        (TrainResult Result, TrainableReport Trainable, double Rate) Train(double? lr, string outDir, int? maxSteps, int validationLimit, IProgress<TrainProgress>? progress)
        {
            var train = run.Model.Apply(new TrainOptions { Epochs = run.Training.Epochs, MaxSteps = maxSteps ?? run.Training.MaxSteps, BatchSize = run.Training.BatchSize, Seed = run.Seed });
            if (llava)
            {
                var s = VqaJobs.Train(new VqaTrainJob
                {
                    ModelDir = modelDir, DataDir = run.Dataset.Dir!, Format = run.Dataset.Format, Strategy = run.Strategy.Spec, OutDir = outDir,
                    Device = ctx.Device, LearningRate = lr, ValidationLimit = validationLimit, MethodOptions = methodOptions, Train = train,
                }, progress, ctx.Cancel);
                return (s.Result, s.Trainable, s.LearningRate);
            }
            var b = ReportJobs.Train(new ReportTrainJob
            {
                ModelDir = modelDir, DataDir = run.Dataset.Dir!, Format = run.Dataset.Format, Strategy = run.Strategy.Spec, OutDir = outDir,
                Device = ctx.Device, LearningRate = lr, MethodOptions = methodOptions, Train = train,
                Options = ReportTaskOptions.For(run.Dataset.Format) with { BatchSize = run.Training.BatchSize, ValidationLimit = validationLimit, DType = run.Model.DType },
            }, progress, ctx.Cancel);
            return (b.Result, b.Trainable, b.LearningRate);
        }

        var (rate, trials) = LrSweep.ForRun(run, ctx, (lr, dir, steps) => Train(lr, dir, steps, SweepValidationStudies, null).Result);
        var (result, trainable, used) = Train(rate, ctx.RunDir, null, run.Training.ValidationLimit, ctx.Progress);
        // BLIP folders: ReportJobs saves prompt-learning runs as base model/ + adapter/ (LLaVA: as LlavaJobs saves them).
        return new RunOutcome(trainable.Trainable, trainable.Total, used, trials, result, Score(Path.Combine(ctx.RunDir, "model"), llava ? null : PromptAdapter(ctx.RunDir)));
    }

    /// <summary>Prompt-learning methods have no merged form: a BLIP run's model/ holds the base and adapter/ the prompt,
    /// so scoring loads the adapter (LoRA and IA3 are merged into model/, selective tuning is in model/ already).</summary>
    internal static string? PromptAdapter(string runDir)
    {
        var summary = Path.Combine(runDir, "train_summary.json");
        if (!File.Exists(summary)) return null;
        var type = JsonNode.Parse(File.ReadAllText(summary))?["adapter"]?.GetValue<string>();
        return type is "PREFIX_TUNING" or "PROMPT_TUNING" ? Path.Combine(runDir, "adapter") : null;
    }
}
