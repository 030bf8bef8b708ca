using TorchSharp;
using static TorchSharp.torch;

namespace MedPeft.Models.Blip;

/// <summary>A VQA batch as HF's BlipForQuestionAnswering.forward takes it. Labels start with the decoder start token
/// ([DEC] = bos_token_id) and use −100 on padding; without DecoderInputIds the labels are the decoder input (as HF).</summary>
public sealed record BlipVqaInput(
    Tensor PixelValues,
    Tensor InputIds,
    Tensor? AttentionMask = null,
    Tensor? DecoderInputIds = null,
    Tensor? DecoderAttentionMask = null,
    Tensor? Labels = null);

public sealed record BlipVqaOutput(Tensor? Loss, Tensor DecoderLogits, Tensor ImageEmbeds, Tensor VisionPoolerOutput, Tensor QuestionEmbeds);

/// <summary>HF's BlipForQuestionAnswering: ViT → question encoder (cross-attends to the image) → answer decoder
/// (cross-attends to the question encoding). Used for MISS and BLIP-VQA.</summary>
public sealed class BlipForQuestionAnswering : nn.Module<BlipVqaInput, BlipVqaOutput>
{
    public BlipVisionModel vision_model;
    public BlipTextModel text_encoder;
    public BlipTextLMHeadModel text_decoder;

    public BlipConfig Config { get; }

    public BlipForQuestionAnswering(BlipConfig config) : base(nameof(BlipForQuestionAnswering))
    {
        Config = config;
        if (config.TextConfig.HiddenSize != config.TextConfig.EncoderHiddenSize)
            throw new MedPeftException("text_config.hidden_size must equal vision_config.hidden_size for BlipForQuestionAnswering (the decoder cross-attends to the text encoder through encoder_hidden_size)");
        vision_model = new BlipVisionModel(config.VisionConfig);
        text_encoder = new BlipTextModel(config.TextConfig);
        text_decoder = new BlipTextLMHeadModel(config.TextConfig);
        RegisterComponents();
    }

    public override BlipVqaOutput forward(BlipVqaInput x)
    {
        using var scope = torch.NewDisposeScope();
        var vision = vision_model.forward(x.PixelValues);
        var question = EncodeQuestion(vision.LastHiddenState, x.InputIds, x.AttentionMask);
        var decoderInput = x.DecoderInputIds ?? x.Labels ?? throw new ArgumentException("either labels or decoder_input_ids is required");
        var logits = text_decoder.forward(new BlipTextInput(decoderInput, x.DecoderAttentionMask, question, x.AttentionMask));
        var loss = x.Labels is null ? null : text_decoder.Loss(logits, x.Labels);
        return new BlipVqaOutput(loss?.MoveToOuterDisposeScope(), logits.MoveToOuterDisposeScope(), vision.LastHiddenState.MoveToOuterDisposeScope(),
            vision.PoolerOutput.MoveToOuterDisposeScope(), question.MoveToOuterDisposeScope());
    }

    Tensor EncodeQuestion(Tensor imageEmbeds, Tensor inputIds, Tensor? attentionMask) =>
        text_encoder.forward(new BlipTextInput(inputIds, attentionMask, imageEmbeds, null));

    /// <summary>HF's BlipForQuestionAnswering.generate: the decoder starts from bos ([DEC]), stops at sep, and
    /// cross-attends to the question encoding with an all-ones mask (unlike forward, which passes the question mask).</summary>
    public GenerationResult Generate(Tensor pixelValues, Tensor inputIds, Tensor? attentionMask, GenerationOptions options, bool keepScores = false)
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var image = vision_model.forward(pixelValues).LastHiddenState;
        var question = EncodeQuestion(image, inputIds, attentionMask);
        if (options.NumBeams > 1) question = question.repeat_interleave(options.NumBeams, 0);
        var questionMask = torch.ones(question.shape[0], question.shape[1], device: question.device);
        var start = torch.full(question.shape[0], 1, Config.TextConfig.BosTokenId, dtype: ScalarType.Int64, device: question.device);
        NextTokenLogits step = ids =>
        {
            var logits = text_decoder.forward(new BlipTextInput(ids, null, question, questionMask));
            return logits[.., -1, ..];
        };
        var o = options with { EosTokenId = Config.TextConfig.SepTokenId, PadTokenId = Config.TextConfig.PadTokenId };
        var result = o.NumBeams > 1 ? Generation.BeamSearch(step, start, o) : Generation.Greedy(step, start, o, keepScores);
        if (result.Scores is not null) foreach (var s in result.Scores) s.MoveToOuterDisposeScope();
        return result;
    }
}
