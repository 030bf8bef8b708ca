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

    static RunOutcome RunFolder(StudyRun run, RunContext ctx) =>
        StudyTasks.RunFolder(run, ctx, "report", SweepValidationStudies, r => Scores(r.Reports!, r.Pairs!.Count));
}
