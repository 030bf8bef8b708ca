using System.Text.Json.Nodes;
using MedPeft.Evaluation;
using MedPeft.Models;
using MedPeft.Tuning;
using TorchSharp;

namespace MedPeft.Experiments;

/// <summary>The test split as the trained model answered it in memory (before it was finalized and saved), with
/// one decoding: answers for Med-VQA, report pairs for report generation.</summary>
public sealed record InMemoryTest(DecodingOverrides Decoding, IReadOnlyList<VqaPrediction>? Answers, IReadOnlyList<ReportPair>? Reports);

/// <summary>What a training run leaves behind and how it is scored again: one rule for every family and task.
/// After training, <see cref="Finalize"/> turns the model into what model/ holds (LoRA and IA3 merged into the
/// weights; prompt-learning modules — prefix, ptuning, prompt, ptuning-v1 — have no merged form and are removed, so
/// model/ is then the base and adapter/ carries the prompt). train_summary.json records which case it was
/// (<see cref="AdapterRequiredKey"/>), and <see cref="ForScoring"/> reads it back.</summary>
public static class TrainedOutputs
{
    /// <summary>train_summary.json field: true when model/ is the untuned base and adapter/ must be loaded onto it.</summary>
    public const string AdapterRequiredKey = "adapter_required";

    /// <summary>Merges what has a merged form and removes what has not (<see cref="FinalizeMode.MergeOrRemove"/>);
    /// returns true when the model is then the base (its trained state lives only in the adapter written before).</summary>
    public static bool Finalize(torch.nn.Module model, TuningStrategy strategy)
    {
        strategy.Finalize(model, FinalizeMode.MergeOrRemove);
        return strategy.Terms.Any(t => !t.Method.CanMerge);
    }

    /// <summary>The model folder and adapter (or null) that reproduce the trained model of a `train` output folder.</summary>
    public static (string Model, string? Adapter) ForScoring(string outDir)
    {
        var summaryPath = Path.Combine(outDir, "train_summary.json");
        if (!File.Exists(summaryPath)) throw new MedPeftException($"{summaryPath}: not found (not a finished `medpeft train` output)");
        bool required = JsonNode.Parse(File.ReadAllText(summaryPath))?[AdapterRequiredKey]?.GetValue<bool>() == true;
        return (Path.Combine(outDir, "model"), required ? Path.Combine(outDir, "adapter") : null);
    }

    /// <summary>The train_summary.json / results.json name of the selection metric: VQA selects on validation
    /// accuracy (%), report generation on validation BLEU-4 (× 100, greedy).</summary>
    public static string ValidationKey(string task) => task == "report" ? "best_validation_bleu4" : "best_validation_acc";
}
