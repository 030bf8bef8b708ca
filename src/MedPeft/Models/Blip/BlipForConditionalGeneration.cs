using TorchSharp;
using static TorchSharp.torch;

namespace MedPeft.Models.Blip;

/// <summary>A captioning / report-generation batch as HF's BlipForConditionalGeneration.forward takes it: the
/// text starts with bos ([DEC]); labels are the input ids with −100 on padding.</summary>
public sealed record BlipCaptionInput(Tensor PixelValues, Tensor InputIds, Tensor? AttentionMask = null, Tensor? Labels = null);

public sealed record BlipCaptionOutput(Tensor? Loss, Tensor Logits, Tensor ImageEmbeds);

/// <summary>HF's BlipForConditionalGeneration: ViT → causal text decoder cross-attending to the image features.
/// Image → caption, i.e. medical report generation.</summary>
public sealed class BlipForConditionalGeneration : nn.Module<BlipCaptionInput, BlipCaptionOutput>
{
    public BlipVisionModel vision_model;
    public BlipTextLMHeadModel text_decoder;

    public BlipConfig Config { get; }

    public BlipForConditionalGeneration(BlipConfig config) : base(nameof(BlipForConditionalGeneration))
    {
        Config = config;
        vision_model = new BlipVisionModel(config.VisionConfig);
        text_decoder = new BlipTextLMHeadModel(config.TextConfig);
        RegisterComponents();
    }

    public override BlipCaptionOutput forward(BlipCaptionInput x)
    {
        using var scope = torch.NewDisposeScope();
        var image = vision_model.forward(x.PixelValues).LastHiddenState;
        var logits = text_decoder.forward(new BlipTextInput(x.InputIds, x.AttentionMask, image));
        var loss = x.Labels is null ? null : text_decoder.Loss(logits, x.Labels);
        return new BlipCaptionOutput(loss?.MoveToOuterDisposeScope(), logits.MoveToOuterDisposeScope(), image.MoveToOuterDisposeScope());
    }

    /// <summary>HF's generate: the prompt defaults to [bos] (HF builds [bos, eos] and drops the last token), the
    /// decoder cross-attends to every image token and stops at sep.</summary>
    public GenerationResult Generate(Tensor pixelValues, GenerationOptions options, Tensor? promptIds = null, bool keepScores = false)
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var image = vision_model.forward(pixelValues).LastHiddenState;
        var result = GenerateFromImageEmbeds(image, options, promptIds, keepScores);
        if (result.Scores is not null) foreach (var s in result.Scores) s.MoveToOuterDisposeScope();
        return result;
    }

    /// <summary>The same decoding from image features [B, N, D] the caller computed (e.g. several views of a study
    /// encoded separately and concatenated along N).</summary>
    public GenerationResult GenerateFromImageEmbeds(Tensor image, GenerationOptions options, Tensor? promptIds = null, bool keepScores = false)
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        long b = image.shape[0];
        var prompt = promptIds?.clone() ?? torch.full(b, 1, Config.TextConfig.BosTokenId, dtype: ScalarType.Int64, device: image.device);
        prompt[.., 0] = torch.tensor(Config.TextConfig.BosTokenId, device: image.device);
        if (options.NumBeams > 1)
        {
            image = image.repeat_interleave(options.NumBeams, 0);
            prompt = prompt.repeat_interleave(options.NumBeams, 0);
        }
        var imageMask = torch.ones(image.shape[0], image.shape[1], device: image.device);
        NextTokenLogits step = ids => text_decoder.forward(new BlipTextInput(ids, null, image, imageMask))[.., -1, ..];
        var o = options with { EosTokenId = Config.TextConfig.SepTokenId, PadTokenId = Config.TextConfig.PadTokenId };
        var result = o.NumBeams > 1 ? Generation.BeamSearch(step, prompt, o) : Generation.Greedy(step, prompt, o, keepScores);
        if (result.Scores is not null) foreach (var s in result.Scores) s.MoveToOuterDisposeScope();
        return result;
    }
}
