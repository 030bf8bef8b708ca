using MedPeft.Data;
using MedPeft.Models;
using MedPeft.Models.Blip;
using TorchSharp;
using static TorchSharp.torch;

namespace MedPeft.Training;

/// <summary>How report text is cleaned before training and scoring (R2Gen's cleaners, <see cref="ReportCleaning"/>).</summary>
public enum ReportCleaningMode { None, IuXray, MimicCxr }

/// <summary>Report-generation settings (BLIP captioning-style: image → report).</summary>
public sealed record ReportTaskOptions
{
    /// <summary>Text the decoder is given after [DEC] and never trained on (BLIP's captioning prompt, e.g. "a picture
    /// of " there; "findings :" fits reports). Empty = none (HF's default). Stripped from generated reports.</summary>
    public string Prompt { get; init; } = "";
    /// <summary>Views per study: 1 = the first image only; 2 = IU-Xray's frontal + lateral pair as R2Gen combines it —
    /// each view encoded by the same vision tower, the two token sequences concatenated for the decoder's
    /// cross-attention (R2Gen concatenates its two views' patch features the same way). Every study must have at
    /// least this many images.</summary>
    public int Views { get; init; } = 2;
    public ReportCleaningMode Cleaning { get; init; } = ReportCleaningMode.IuXray;
    /// <summary>Words kept of each cleaned report, for training targets and references alike: R2Gen's max_seq_length − 1
    /// (IU-Xray 60 → 59, MIMIC-CXR 100 → 99). 0 = no truncation (the model's positions still cap the target).</summary>
    public int MaxWords { get; init; } = 59;
    public string Normalization { get; init; } = "blip";
    /// <summary>Weight dtype the captioning model is loaded in (auto, bf16, fp16, fp32; see <see cref="Precision"/>).</summary>
    public string DType { get; init; } = "auto";
    /// <summary>Test decoding: R2Gen's beam 3; at least BLIP captioning's min_length 5 new tokens; at most the
    /// model's position limit.</summary>
    public GenerationOptions Decoding { get; init; } = new(MaxNewTokens: 60, MinNewTokens: 5, NumBeams: 3);
    public int BatchSize { get; init; } = 16;
    /// <summary>Validation studies used for selection (greedy decoding, BLEU-4), 0 = all.</summary>
    public int ValidationLimit { get; init; } = 0;
    public Augmentation? Augmentation { get; init; }
    public int PrefetchBatches { get; init; } = 2;

    /// <summary>R2Gen's per-dataset defaults for a report format name (iu-xray, mimic-cxr).</summary>
    public static ReportTaskOptions For(string format) => DatasetFormats.Get(format).Name switch
    {
        DatasetFormats.MimicCxr => new ReportTaskOptions { Views = 1, Cleaning = ReportCleaningMode.MimicCxr, MaxWords = 99, Decoding = new(MaxNewTokens: 100, MinNewTokens: 5, NumBeams: 3) },
        _ => new ReportTaskOptions(),
    };
}

public sealed record ReportPreparedBatch(IReadOnlyList<ReportSample> Samples, Tensor[]? CachedImages, float[][]? Pixels, int[][] Targets);

/// <summary>A report batch as tensors: every study's views flattened to [B·V, 3, S, S].</summary>
public sealed record ReportInput(Tensor PixelValues, int Views, Tensor InputIds, Tensor AttentionMask, Tensor Labels);

/// <summary>Turns report studies into batches for <see cref="BlipForConditionalGeneration"/>: targets are
/// "[DEC] prompt report [SEP]" with −100 labels on the prompt (BLIP's decoder_targets[:, :prompt_length] = −100) and
/// on padding; the loss is HF's label-smoothed (0.1) LM loss.</summary>
public sealed class ReportBatcher
{
    public BlipTokenizer Tokenizer { get; }
    public ImageCache Images { get; }
    public ReportTaskOptions Options { get; }
    public long AugmentationSeed { get; init; } = 42;
    readonly int[] _prompt;
    readonly int _maxPositions;

    public ReportBatcher(BlipTokenizer tokenizer, ImageCache images, ReportTaskOptions options, int maxPositions)
    {
        if (options.Views < 1) throw new MedPeftException($"report task: views must be ≥ 1 (got {options.Views})");
        if (options.MaxWords < 0) throw new MedPeftException($"report task: max words must be ≥ 0 (got {options.MaxWords})");
        Tokenizer = tokenizer; Images = images; Options = options; _maxPositions = maxPositions;
        var p = tokenizer.EncodeTarget(options.Prompt, maxPositions);
        _prompt = p[..^1];   // [DEC] prompt tokens, without [SEP]
        if (_prompt.Length >= maxPositions - 1) throw new MedPeftException($"report task: prompt \"{options.Prompt}\" leaves no room in {maxPositions} positions");
    }

    /// <summary>[DEC] + prompt tokens: what generation starts from.</summary>
    public int PromptLength => _prompt.Length;

    /// <summary>The reference text: cleaned (R2Gen) and truncated to MaxWords.</summary>
    public string Reference(ReportSample s)
    {
        var t = Clean(s.Report);
        return Options.MaxWords > 0 ? ReportCleaning.Truncate(t, Options.MaxWords) : t;
    }

    string Clean(string text) => Options.Cleaning switch
    {
        ReportCleaningMode.IuXray => ReportCleaning.CleanIuXray(text),
        ReportCleaningMode.MimicCxr => ReportCleaning.CleanMimicCxr(text),
        _ => text.Trim(),
    };

    /// <summary>A generated report in the references' form: the WordPiece decoder glues punctuation ("normal.") where
    /// cleaned references separate it ("normal ."), so the candidate goes through the same cleaner — otherwise BLEU
    /// would count detokenisation as errors. Not truncated.</summary>
    public string Candidate(IEnumerable<long> generated)
    {
        var text = Tokenizer.Decode(generated.Skip(PromptLength));
        return text.Trim().Length == 0 ? "" : Clean(text);
    }

    /// <summary>Decoding limited so prompt + report fit the model's positions.</summary>
    public GenerationOptions Limit(GenerationOptions o)
    {
        int room = _maxPositions - _prompt.Length;
        return o with { MaxNewTokens = Math.Min(o.MaxNewTokens, room), MinNewTokens = Math.Min(o.MinNewTokens, room) };
    }

    public int[] EncodeTarget(ReportSample s)
    {
        var body = Tokenizer.EncodeTarget(Reference(s), _maxPositions - _prompt.Length + 1);   // [DEC] report [SEP]
        return [.. _prompt, .. body[1..]];
    }

    IEnumerable<string> ViewPaths(ReportSample s)
    {
        if (s.ImagePaths.Count < Options.Views)
            throw new MedPeftException($"report study {s.Id}: {s.ImagePaths.Count} image(s), the task uses {Options.Views} views per study (set views to 1 to use the first image)");
        return s.ImagePaths.Take(Options.Views);
    }

    public ReportPreparedBatch Prepare(IReadOnlyList<ReportSample> samples, int epoch)
    {
        Tensor[]? cached = null; float[][]? pixels = null;
        if (Options.Augmentation is { } aug)
            pixels = samples.SelectMany(s => ViewPaths(s).Select(p => Images.Processor.Pixels(p, aug, AugmentationSeed, epoch, s.Id + "\n" + p))).ToArray();
        else
            cached = samples.SelectMany(s => ViewPaths(s).Select(Images.Get)).ToArray();
        return new ReportPreparedBatch(samples, cached, pixels, samples.Select(EncodeTarget).ToArray());
    }

    public ReportInput Batch(ReportPreparedBatch p, Device device)
    {
        var pixels = VqaBatcher.Stack(p.CachedImages, p.Pixels, Images.Processor.Size, device);
        var (ids, mask) = Padding.Pad(p.Targets, Tokenizer.PadId, device);
        var labels = ids.masked_fill(mask.eq(0), -100);
        labels[.., ..PromptLength] = torch.tensor(-100L, device: device);
        return new ReportInput(pixels, Options.Views, ids, mask, labels);
    }

    /// <summary>Evaluation pixels (never augmented): [B·V, 3, S, S].</summary>
    public Tensor Pixels(IReadOnlyList<ReportSample> samples, Device device) =>
        torch.stack(samples.SelectMany(s => ViewPaths(s).Select(Images.Get)).ToArray()).to(device);

    /// <summary>Image features for the decoder: each view through the vision tower, views concatenated along the
    /// token axis → [B, V·N, D]. With one view this is exactly HF's forward.</summary>
    public static Tensor ImageEmbeds(BlipForConditionalGeneration model, Tensor pixels, int views)
    {
        using var scope = torch.NewDisposeScope();
        var h = model.vision_model.forward(pixels).LastHiddenState;   // [B·V, N, D]
        return h.reshape(h.shape[0] / views, views * h.shape[1], h.shape[2]).MoveToOuterDisposeScope();
    }

    public static Tensor Loss(BlipForConditionalGeneration model, ReportInput x)
    {
        using var scope = torch.NewDisposeScope();
        var image = ImageEmbeds(model, x.PixelValues, x.Views);
        var logits = model.text_decoder.forward(new BlipTextInput(x.InputIds, x.AttentionMask, image));
        return model.text_decoder.Loss(logits, x.Labels).MoveToOuterDisposeScope();
    }

    /// <summary>The prompt ids [B, P] for generation.</summary>
    public Tensor PromptIds(int batch, Device device) =>
        torch.tensor(_prompt.Select(i => (long)i).ToArray(), [1, _prompt.Length], device: device).repeat(batch, 1);
}
