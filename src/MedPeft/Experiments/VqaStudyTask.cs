using MedPeft.Data;
using MedPeft.Evaluation;
using MedPeft.Training;

namespace MedPeft.Experiments;

/// <summary>Med-VQA runs of a study. On the embedded benchmark a run executes in-process on the cached pretrained
/// model (<see cref="EmbeddedStudy"/>, one instance per benchmark size and pretraining seed, kept for the process).
/// On a real dataset it goes through <see cref="VqaJobs"/> — the same train and evaluate as <c>medpeft train</c> /
/// <c>medpeft eval</c> — writing model/, adapter/ and log.jsonl into the run's folder, then scoring the test split
/// and every extra test set (cross-dataset zero-shot) with MISS's decoding.</summary>
public sealed class VqaStudyTask : IStudyTask
{
    public string Name => "vqa";

    public RunOutcome Run(StudyRun run, RunContext ctx)
    {
        if (run.Dataset.IsEmbedded) return EmbeddedStudy.For(run, ctx).Run(run, ctx);
        var modelDir = StudyTasks.FolderRunModel(run, ctx, "VqaJobs");

        var decoding = VqaEvaluation.MissDecoding;
        Dictionary<string, System.Text.Json.Nodes.JsonObject> Score(string dir, string? adapter = null)
        {
            var metrics = new Dictionary<string, System.Text.Json.Nodes.JsonObject>
            {
                ["test"] = RunOutcome.Scores(VqaJobs.Evaluate(dir, run.Dataset.Dir!, run.Dataset.Format, run.Dataset.Test, decoding, ctx.Device, adapterDir: adapter, dtype: run.Model.DType).Scores),
            };
            foreach (var extra in run.Dataset.ExtraTests)
                metrics[$"extra:{extra.Name}"] = RunOutcome.Scores(VqaJobs.Evaluate(dir, extra.Dir, extra.Format, extra.Split, decoding, ctx.Device, adapterDir: adapter, dtype: run.Model.DType).Scores);
            return metrics;
        }

        if (run.Strategy.IsZeroShot)
        {
            PeakMemory.Reset();
            var clock = System.Diagnostics.Stopwatch.StartNew();
            var metrics = Score(modelDir);
            long total;
            using (var m = Models.Presets.FromFolder(modelDir).BuildOnMeta())   // count on the meta device: no weights loaded
                total = Models.ModelUtils.UniqueParameters(m).Sum(p => p.Param.numel());
            return RunOutcome.ZeroShot(total, metrics, PeakMemory.Bytes(), clock.Elapsed.TotalSeconds);
        }

        VqaTrainJob Job(double? lr, string outDir, int? maxSteps, int validationLimit) => new()
        {
            ModelDir = modelDir, DataDir = run.Dataset.Dir!, Format = run.Dataset.Format, Strategy = run.Strategy.Spec, OutDir = outDir,
            Device = ctx.Device, LearningRate = lr, ValidationLimit = validationLimit,
            MethodOptions = run.Strategy.ParseOptions(),   // every method's options, not only LoRA's
            Train = run.Model.Apply(new TrainOptions { Epochs = run.Training.Epochs, MaxSteps = maxSteps ?? run.Training.MaxSteps, BatchSize = run.Training.BatchSize, Seed = run.Seed }),
        };

        var (rate, trials) = LrSweep.ForRun(run, ctx, (lr, dir, steps) =>
            VqaJobs.Train(Job(lr, dir, steps, LrSweep.ValidationQuestions), cancel: ctx.Cancel).Result);
        var summary = VqaJobs.Train(Job(rate, ctx.RunDir, null, run.Training.ValidationLimit), ctx.Progress, ctx.Cancel);
        // BLIP: VqaJobs saves prompt-learning runs as base model/ + adapter/, so they are scored with the adapter.
        var adapter = LlavaJobs.IsLlavaFolder(modelDir) ? null : ReportStudyTask.PromptAdapter(ctx.RunDir);
        return new RunOutcome(summary.Trainable.Trainable, summary.Trainable.Total, summary.LearningRate, trials, summary.Result,
            Score(Path.Combine(ctx.RunDir, "model"), adapter));
    }
}
