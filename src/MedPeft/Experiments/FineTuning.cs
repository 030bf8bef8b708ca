using MedPeft.Data;
using MedPeft.Evaluation;
using MedPeft.Models;
using MedPeft.Models.Blip;
using MedPeft.Training;
using MedPeft.Tuning;
using TorchSharp;

namespace MedPeft.Experiments;

/// <summary>What one training run returns, whatever the family and task.</summary>
public sealed record FineTuneSummary(TrainableReport Trainable, TrainResult Result, double LearningRate, string OutDir, string Task)
{
    /// <summary>The job's <see cref="VqaTrainJob.ScoreTest"/> results (in-memory model, before saving), in its order.</summary>
    public IReadOnlyList<InMemoryTest> Tests { get; init; } = [];
    /// <summary>BLIP report generation: how the captioning model was initialised (a VQA folder drops its text_encoder).</summary>
    public CaptioningLoad? Load { get; init; }
}

/// <summary>One test set scored by <see cref="FineTuning.Evaluate"/>: Med-VQA answers and scores, or report pairs and
/// scores.</summary>
public sealed record EvalResult(VqaScores? Vqa, IReadOnlyList<VqaPrediction>? Answers, ReportScores? Reports, IReadOnlyList<ReportPair>? Pairs)
{
    public CaptioningLoad? Load { get; init; }
}

/// <summary>`medpeft eval` on one test set: a model folder (plus a PEFT adapter), a dataset split, decoding overrides
/// on the folder's defaults. BLIP reports take <see cref="ReportOptions"/> (views, words, cleaning, decoding); LLaVA
/// reports <see cref="ReportPrompt"/>.</summary>
public sealed record EvalJob
{
    public required string ModelDir { get; init; }
    public string? AdapterDir { get; init; }
    public required string DataDir { get; init; }
    public string Format { get; init; } = "slake";
    public string Split { get; init; } = Splits.Test;
    /// <summary>"vqa" or "report" (null: the dataset format's task).</summary>
    public string? Task { get; init; }
    public DecodingOverrides? Decoding { get; init; }
    public string Device { get; init; } = "cpu";
    public string Normalization { get; init; } = "blip";
    public string? Template { get; init; }
    public string? ReportPrompt { get; init; }
    public ReportTaskOptions? ReportOptions { get; init; }
    public Action<string>? Log { get; init; }
    /// <summary>Weight dtype (auto, bf16, fp16, fp32; see <see cref="Precision"/>).</summary>
    public string DType { get; init; } = "auto";
}

/// <summary>The one entry point of fine-tuning and scoring over model family (BLIP, LLaVA — told apart here and only
/// here, from the folder's config.json) × task (Med-VQA, report generation): `medpeft train` / `medpeft eval` and the
/// study's folder runs call <see cref="Train"/> and <see cref="Evaluate"/>. Every path reads the data, batches, trains
/// with the one <see cref="Trainer"/>, selects on validation, scores the test split in memory when asked, writes
/// adapter/ and model/ through <see cref="TrainedOutputs"/> and train_summary.json.</summary>
public static class FineTuning
{
    /// <summary>The family of a model folder: LLaVA (HF or original layout) or BLIP; anything else is refused.</summary>
    public static ModelFamily Family(string modelDir)
    {
        if (!Directory.Exists(modelDir)) throw new MedPeftException($"{modelDir}: model folder not found");
        if (!File.Exists(Path.Combine(modelDir, "config.json")))
            throw new MedPeftException($"{modelDir}: no config.json (neither a BLIP checkpoint folder nor a LLaVA folder)");
        return Presets.FromFolder(modelDir).Family;
    }

    /// <summary>"vqa" or "report": the requested task, checked against the dataset format (null: the format's).</summary>
    public static string TaskOf(string format) => DatasetFormats.TaskOf(format) == DatasetTask.Report ? "report" : "vqa";

    public static string TaskFor(string? requested, string format)
    {
        var formatTask = TaskOf(format);
        if (requested is null || requested == formatTask) return formatTask;
        throw new MedPeftException(requested == "report"
            ? $"--format {format}: not a report dataset (iu-xray, mimic-cxr)"
            : $"--format {format}: a report dataset; use --task report");
    }

    public static FineTuneSummary Train(VqaTrainJob job, IProgress<TrainProgress>? progress = null, CancellationToken cancel = default)
    {
        var task = TaskFor(job.Task, job.Format);
        if (Family(job.ModelDir) == ModelFamily.Llava) return LlavaJobs.Train(job, progress, cancel);
        if (task == "vqa") return VqaJobs.TrainBlip(job, progress, cancel);
        var options = job.ReportOptions ?? ReportTaskOptions.For(job.Format) with
        {
            BatchSize = job.Train.BatchSize, Normalization = job.Normalization, Augmentation = job.Augmentation,
            PrefetchBatches = job.Train.PrefetchBatches, ValidationLimit = job.ValidationLimit,
        };
        options = options with { DType = job.Train.DType };
        return ReportJobs.Train(new ReportTrainJob
        {
            ModelDir = job.ModelDir, DataDir = job.DataDir, Format = job.Format, Strategy = job.Strategy, OutDir = job.OutDir, Device = job.Device,
            LearningRate = job.LearningRate, Train = job.Train, MethodOptions = job.MethodOptions, Options = options, ScoreTest = job.ScoreTest,
        }, progress, cancel);
    }

    public static EvalResult Evaluate(EvalJob job)
    {
        var task = TaskFor(job.Task, job.Format);
        bool llava = Family(job.ModelDir) == ModelFamily.Llava;
        if (task == "vqa")
        {
            var (scores, answers) = llava
                ? LlavaJobs.Evaluate(job.ModelDir, job.DataDir, job.Format, job.Split, job.Decoding, job.Device, job.Normalization, job.AdapterDir, job.Template, job.Log, job.DType)
                : VqaJobs.EvaluateBlip(job.ModelDir, job.DataDir, job.Format, job.Split, VqaEvaluation.MissDecoding, job.Device, job.Normalization, job.AdapterDir, job.Decoding, job.DType);
            return new EvalResult(scores, answers, null, null);
        }
        if (llava)
        {
            var (s, pairs) = LlavaJobs.EvaluateReports(job.ModelDir, job.DataDir, job.Format, job.Split, job.Decoding, job.Device, job.Normalization,
                job.AdapterDir, job.Template, job.ReportPrompt, job.Log, job.DType);
            return new EvalResult(null, null, s, pairs);
        }
        var options = (job.ReportOptions ?? ReportTaskOptions.For(job.Format) with { Normalization = job.Normalization }) with { DType = job.DType };
        if (job.Decoding is { } d) options = options with { Decoding = d.ApplyTo(options.Decoding) };
        var (scores_, preds, load) = ReportJobs.Evaluate(job.ModelDir, job.DataDir, job.Format, job.Split, options, job.Device, job.AdapterDir);
        return new EvalResult(null, null, scores_, preds) { Load = load };
    }
}
