using MedPeft.Data;
using MedPeft.Models;
using MedPeft.Models.Blip;
using MedPeft.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace MedPeft.Evaluation;

/// <summary>Generates reports for studies (beam search within the model's length limits) and scores them with
/// pycocoevalcap's BLEU-1..4, ROUGE-L and CIDEr-D against the cleaned, truncated reference.</summary>
public static class ReportEvaluation
{
    public static List<ReportPair> Predict(BlipForConditionalGeneration model, IReadOnlyList<ReportSample> samples, ReportBatcher batcher,
        GenerationOptions decoding, Device device, int batchSize = 16)
    {
        model.eval();
        var o = batcher.Limit(decoding);
        var pairs = new List<ReportPair>(samples.Count);
        for (int i = 0; i < samples.Count; i += batchSize)
        {
            using var scope = torch.NewDisposeScope();
            using var noGrad = torch.no_grad();
            var chunk = samples.Skip(i).Take(batchSize).ToList();
            var image = ReportBatcher.ImageEmbeds(model, batcher.Pixels(chunk, device), batcher.Options.Views);
            var result = model.GenerateFromImageEmbeds(image, o, batcher.PromptIds(chunk.Count, device));
            for (int j = 0; j < chunk.Count; j++)
                pairs.Add(new ReportPair(chunk[j].Id, batcher.Candidate(result.Sequences[j]), [batcher.Reference(chunk[j])]));
        }
        return pairs;
    }

    public static ReportScores Evaluate(BlipForConditionalGeneration model, IReadOnlyList<ReportSample> samples, ReportBatcher batcher,
        GenerationOptions decoding, Device device, int batchSize = 16) =>
        ReportMetrics.Compute(Predict(model, samples, batcher, decoding, device, batchSize));
}
