using MedPeft.Data;
using MedPeft.Models;
using MedPeft.Models.Blip;
using MedPeft.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace MedPeft.Evaluation;

/// <summary>Generates answers for VQA samples (MISS's decoding by default: beam 3, max length 10 ⇒ 9 new tokens,
/// eos [SEP]) and scores them.</summary>
public static class VqaEvaluation
{
    public static readonly GenerationOptions MissDecoding = new(MaxNewTokens: 9, MinNewTokens: 0, NumBeams: 3);

    public static List<VqaPrediction> Predict(BlipForQuestionAnswering model, IReadOnlyList<VqaSample> samples, VqaBatcher batcher,
        GenerationOptions decoding, Device device, int batchSize = 64)
    {
        model.eval();
        var predictions = new List<VqaPrediction>(samples.Count);
        for (int i = 0; i < samples.Count; i += batchSize)
        {
            using var scope = torch.NewDisposeScope();
            var chunk = samples.Skip(i).Take(batchSize).ToList();
            var x = batcher.Batch(chunk, device, withLabels: false);
            var result = model.Generate(x.PixelValues, x.InputIds, x.AttentionMask, decoding);
            for (int j = 0; j < chunk.Count; j++)
            {
                var s = chunk[j];
                predictions.Add(new VqaPrediction(s.Id, s.Question, s.Answer, batcher.Tokenizer.Decode(result.Sequences[j].Skip(1)), s.AnswerType));
            }
        }
        return predictions;
    }

    public static VqaScores Evaluate(BlipForQuestionAnswering model, IReadOnlyList<VqaSample> samples, VqaBatcher batcher,
        GenerationOptions decoding, Device device, int batchSize = 64) =>
        VqaScorer.Score(Predict(model, samples, batcher, decoding, device, batchSize));
}
