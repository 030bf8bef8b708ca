using MedPeft.Data;
using MedPeft.Models.Blip;
using TorchSharp;
using static TorchSharp.torch;

namespace MedPeft.Training;

/// <summary>Turns VQA samples into a <see cref="BlipVqaInput"/> batch: images stacked, questions as [ENC] … [SEP]
/// (max 35 tokens, as MISS), answers as [DEC] … [SEP] with −100 labels on padding. The same batcher serves
/// captioning-style pretraining: the "question" is the prompt and the "answer" the caption.</summary>
public sealed class VqaBatcher(BlipTokenizer tokenizer, ImageCache images, int maxQuestionTokens = 35, int maxAnswerTokens = 16)
{
    public BlipTokenizer Tokenizer { get; } = tokenizer;
    public ImageCache Images { get; } = images;
    public int MaxAnswerTokens { get; } = maxAnswerTokens;

    public BlipVqaInput Batch(IReadOnlyList<VqaSample> samples, Device device, bool withLabels = true)
    {
        var pixels = torch.stack(samples.Select(s => Images.Get(s.ImagePath)).ToArray()).to(device);
        var (qIds, qMask) = Pad(samples.Select(s => Tokenizer.EncodeQuestion(s.Question, maxQuestionTokens)).ToList(), device);
        if (!withLabels) return new BlipVqaInput(pixels, qIds, qMask);
        var (aIds, aMask) = Pad(samples.Select(s => Tokenizer.EncodeTarget(s.Answer, MaxAnswerTokens)).ToList(), device);
        var labels = aIds.masked_fill(aMask.eq(0), -100);
        return new BlipVqaInput(pixels, qIds, qMask, aIds, aMask, labels);
    }

    (Tensor Ids, Tensor Mask) Pad(List<int[]> rows, Device device)
    {
        int width = rows.Max(r => r.Length);
        var ids = new long[rows.Count * width];
        var mask = new long[rows.Count * width];
        for (int i = 0; i < rows.Count; i++)
            for (int j = 0; j < width; j++)
            {
                bool real = j < rows[i].Length;
                ids[i * width + j] = real ? rows[i][j] : Tokenizer.PadId;
                mask[i * width + j] = real ? 1 : 0;
            }
        return (torch.tensor(ids, [rows.Count, width], device: device), torch.tensor(mask, [rows.Count, width], device: device));
    }
}
