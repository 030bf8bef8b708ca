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
        return StudyTasks.RunFolder(run, ctx, "vqa", LrSweep.ValidationQuestions, r => RunOutcome.Scores(r.Vqa!));
    }
}
