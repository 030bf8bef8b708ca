using MedPeft.Data;
using MedPeft.Models.Blip;
using TorchSharp;
using static TorchSharp.torch;

namespace MedPeft.Training;

/// <summary>A VQA micro-batch as CPU data, ready to become tensors: images either as cached tensors (evaluation-style
/// preprocessing, decoded once) or as freshly augmented pixels, and token ids. Made on the prefetch thread.</summary>
public sealed record VqaPreparedBatch(IReadOnlyList<VqaSample> Samples, Tensor[]? CachedImages, float[][]? Pixels, int[][] Questions, int[][] Answers);

/// <summary>Turns VQA samples into a <see cref="BlipVqaInput"/> batch: images stacked, questions as [ENC] … [SEP]
/// (max 35 tokens, as MISS), answers as [DEC] … [SEP] with −100 labels on padding. The same batcher serves
/// captioning-style pretraining: the "question" is the prompt and the "answer" the caption. With an
/// <see cref="Augmentation"/>, training batches (<see cref="Prepare"/>) get seeded random crops and rotations per
/// (seed, epoch, sample); <see cref="Batch(IReadOnlyList{VqaSample}, Device, bool)"/> (evaluation) never does.</summary>
public sealed class VqaBatcher(BlipTokenizer tokenizer, ImageCache images, int maxQuestionTokens = 35, int maxAnswerTokens = 16)
{
    public BlipTokenizer Tokenizer { get; } = tokenizer;
    public ImageCache Images { get; } = images;
    public int MaxAnswerTokens { get; } = maxAnswerTokens;
    public Augmentation? Augmentation { get; init; }
    public long AugmentationSeed { get; init; } = 42;

    public BlipVqaInput Batch(IReadOnlyList<VqaSample> samples, Device device, bool withLabels = true)
    {
        var pixels = torch.stack(samples.Select(s => Images.Get(s.ImagePath)).ToArray()).to(device);
        var (qIds, qMask) = Pad(samples.Select(s => Tokenizer.EncodeQuestion(s.Question, maxQuestionTokens)).ToList(), device);
        if (!withLabels) return new BlipVqaInput(pixels, qIds, qMask);
        var (aIds, aMask) = Pad(samples.Select(s => Tokenizer.EncodeTarget(s.Answer, MaxAnswerTokens)).ToList(), device);
        var labels = aIds.masked_fill(aMask.eq(0), -100);
        return new BlipVqaInput(pixels, qIds, qMask, aIds, aMask, labels);
    }

    /// <summary>The CPU half of a training batch (thread-safe: decoding, augmentation, tokenisation).</summary>
    public VqaPreparedBatch Prepare(IReadOnlyList<VqaSample> samples, int epoch)
    {
        Tensor[]? cached = null; float[][]? pixels = null;
        if (Augmentation is { } aug)
            pixels = samples.Select(s => Images.Processor.Pixels(s.ImagePath, aug, AugmentationSeed, epoch, s.Id + "\n" + s.ImagePath)).ToArray();
        else
            cached = samples.Select(s => Images.Get(s.ImagePath)).ToArray();
        return new VqaPreparedBatch(samples, cached, pixels,
            samples.Select(s => Tokenizer.EncodeQuestion(s.Question, maxQuestionTokens)).ToArray(),
            samples.Select(s => Tokenizer.EncodeTarget(s.Answer, MaxAnswerTokens)).ToArray());
    }

    /// <summary>The tensor half, on the training thread.</summary>
    public BlipVqaInput Batch(VqaPreparedBatch p, Device device)
    {
        var pixels = Stack(p.CachedImages, p.Pixels, Images.Processor.Size, device);
        var (qIds, qMask) = Pad(p.Questions, device);
        var (aIds, aMask) = Pad(p.Answers, device);
        return new BlipVqaInput(pixels, qIds, qMask, aIds, aMask, aIds.masked_fill(aMask.eq(0), -100));
    }

    /// <summary>[B, 3, S, S] from cached image tensors or from CPU pixel arrays.</summary>
    public static Tensor Stack(Tensor[]? cached, float[][]? pixels, int size, Device device)
    {
        if (cached is not null) return torch.stack(cached).to(device);
        int n = 3 * size * size;
        var flat = new float[pixels!.Length * n];
        for (int i = 0; i < pixels.Length; i++) Array.Copy(pixels[i], 0, flat, i * n, n);
        return torch.tensor(flat, [pixels.Length, 3, size, size], device: device);
    }

    (Tensor Ids, Tensor Mask) Pad(IReadOnlyList<int[]> rows, Device device) => Padding.Pad(rows, Tokenizer.PadId, device);
}

/// <summary>Right-padding of token id rows into ids + attention mask tensors.</summary>
public static class Padding
{
    public static (Tensor Ids, Tensor Mask) Pad(IReadOnlyList<int[]> rows, int padId, Device device)
    {
        int width = rows.Max(r => r.Length);
        var ids = new long[rows.Count * width];
        var mask = new long[rows.Count * width];
        for (int i = 0; i < rows.Count; i++)
            for (int j = 0; j < width; j++)
            {
                bool real = j < rows[i].Length;
                ids[i * width + j] = real ? rows[i][j] : padId;
                mask[i * width + j] = real ? 1 : 0;
            }
        return (torch.tensor(ids, [rows.Count, width], device: device), torch.tensor(mask, [rows.Count, width], device: device));
    }
}
