using System.Text.Json;
using System.Text.Json.Serialization;
using MedPeft.Models.Clip;
using MedPeft.Models.Llama;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MedPeft.Models.Llava;

// LLaVA as in HF transformers 4.37 (modeling_llava.py): vision_tower (CLIPVisionModel) → hidden_states[vision_feature_layer]
// (CLS dropped for strategy "default") → multi_modal_projector → spliced into the Llama input embeddings in place of
// each <image> token (_merge_input_ids_with_image_features: the sequence grows by N−1 per image, left padding is
// detected from the last column, position ids = cumsum(mask) − 1 with pads at 1, labels −100 on image positions) →
// language_model (LlamaForCausalLM). Field names are HF's, so state_dict keys equal the safetensors keys.

/// <summary>HF's LlavaConfig (4.37). Absent <c>vision_config</c> ⇒ the LLaVA-1.5 CLIP ViT-L/14-336 defaults;
/// absent <c>text_config</c> ⇒ LlamaConfig defaults; a given sub-config takes its own class defaults for absent
/// fields. <c>projector_type</c> is MedPeft's: "mlp2x_gelu" (HF's linear_1 → act → linear_2, the default) or "linear"
/// (LLaVA-Med v1 / LLaVA v1's single mm_projector, stored as multi_modal_projector.linear_1).</summary>
public sealed class LlavaConfig
{
    [JsonPropertyName("architectures")] public List<string>? Architectures { get; set; }
    [JsonPropertyName("model_type")] public string ModelType { get; set; } = "llava";
    [JsonPropertyName("vision_config")] public CLIPVisionConfig VisionConfig { get; set; } = new()
    {
        IntermediateSize = 4096, HiddenSize = 1024, PatchSize = 14, ImageSize = 336, NumHiddenLayers = 24,
        NumAttentionHeads = 16, ProjectionDim = 768,
    };
    [JsonPropertyName("text_config")] public LlamaConfig TextConfig { get; set; } = new();
    [JsonPropertyName("ignore_index")] public long IgnoreIndex { get; set; } = -100;
    [JsonPropertyName("image_token_index")] public long ImageTokenIndex { get; set; } = 32000;
    [JsonPropertyName("projector_hidden_act")] public string ProjectorHiddenAct { get; set; } = "gelu";
    [JsonPropertyName("projector_type")] public string ProjectorType { get; set; } = "mlp2x_gelu";
    [JsonPropertyName("vision_feature_select_strategy")] public string VisionFeatureSelectStrategy { get; set; } = "default";
    [JsonPropertyName("vision_feature_layer")] public int VisionFeatureLayer { get; set; } = -2;
    [JsonPropertyName("vocab_size")] public int? VocabSize { get; set; }
    [JsonPropertyName("pad_token_id")] public long? PadTokenId { get; set; }
    [JsonPropertyName("bos_token_id")] public long? BosTokenId { get; set; }
    [JsonPropertyName("eos_token_id")] public long? EosTokenId { get; set; }
    [JsonPropertyName("torch_dtype")] public string? TorchDtype { get; set; }

    static readonly JsonSerializerOptions JsonOptions = new() { WriteIndented = true, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull };

    public static LlavaConfig FromJson(string json, string source)
    {
        LlavaConfig? c;
        try { c = JsonSerializer.Deserialize<LlavaConfig>(json); }
        catch (JsonException e) { throw new MedPeftException($"{source}: invalid LLaVA config: {e.Message}"); }
        if (c is null) throw new MedPeftException($"{source}: empty LLaVA config");
        return c.Validate(source);
    }

    public static LlavaConfig Load(string path) =>
        File.Exists(path) ? FromJson(File.ReadAllText(path), path) : throw new MedPeftException($"{path}: config file not found");

    public string ToJson() => JsonSerializer.Serialize(this, JsonOptions);

    public LlavaConfig Clone() => FromJson(ToJson(), "(clone)");

    /// <summary>HF's LlavaForConditionalGeneration.pad_token_id: config.pad_token_id, or −1 when absent.</summary>
    [JsonIgnore] public long EffectivePadTokenId => PadTokenId ?? -1;

    public LlavaConfig Validate(string source)
    {
        void Check(bool ok, string field, string why) { if (!ok) throw new MedPeftException($"{source}: field \"{field}\" {why}"); }
        Check(VisionConfig.ModelType == "clip_vision_model", "vision_config.model_type", $"\"{VisionConfig.ModelType}\" is not supported (clip_vision_model)");
        VisionConfig.Validate(source);
        TextConfig.Validate(source);
        Check(VisionFeatureSelectStrategy is "default" or "full", "vision_feature_select_strategy", "must be \"default\" or \"full\"");
        int states = VisionConfig.NumHiddenLayers + 1;
        Check(VisionFeatureLayer >= -states && VisionFeatureLayer < states, "vision_feature_layer", $"must index one of the {states} hidden states");
        Check(ProjectorType is "mlp2x_gelu" or "linear", "projector_type", "must be \"mlp2x_gelu\" or \"linear\"");
        Activations.Get(ProjectorHiddenAct);
        // image_token_index is not checked against text_config.vocab_size: HF's bare defaults (32000 vs vocab 32000) are
        // "valid" configs too; real checkpoints resize the vocabulary (llava-hf: 32064).
        Check(ImageTokenIndex >= 0, "image_token_index", "must be a token id");
        return this;
    }
}

/// <summary>HF's LlavaMultiModalProjector (linear_1 → act → linear_2); with projector_type "linear" only linear_1
/// (vision hidden → text hidden), the single-layer mm_projector of LLaVA v1 / LLaVA-Med v1.</summary>
public sealed class LlavaMultiModalProjector : nn.Module<Tensor, Tensor>
{
    public nn.Module<Tensor, Tensor> linear_1;
    public nn.Module<Tensor, Tensor>? linear_2;
    readonly Func<Tensor, Tensor>? _act;

    public LlavaMultiModalProjector(LlavaConfig c) : base(nameof(LlavaMultiModalProjector))
    {
        linear_1 = nn.Linear(c.VisionConfig.HiddenSize, c.TextConfig.HiddenSize);
        if (c.ProjectorType != "linear")
        {
            _act = Activations.Get(c.ProjectorHiddenAct);
            linear_2 = nn.Linear(c.TextConfig.HiddenSize, c.TextConfig.HiddenSize);
        }
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = torch.NewDisposeScope();
        var h = linear_1.call(x);
        if (linear_2 is not null) h = linear_2.call(_act!(h));
        return h.MoveToOuterDisposeScope();
    }
}

/// <summary>LLaVA forward input: ids [B, L] with <c>image_token_index</c> where each image goes, images
/// [num_images, 3, H, W] (one per image token, in reading order), 0/1 mask [B, L], optional labels [B, L].</summary>
public sealed record LlavaInput(Tensor InputIds, Tensor? PixelValues, Tensor? AttentionMask = null, Tensor? Labels = null);

/// <summary>Everything HF computes on the way (the fixture names): image features after the projector, the merged
/// sequence handed to the Llama model (embeddings, mask, position ids, labels), CLIP's selected hidden state and its
/// last layer output (before post_layernorm), Llama's final hidden states, logits and, with labels, the loss.
/// Without pixel values the image fields are null and the merged fields are the plain text inputs.</summary>
public sealed record LlavaOutput(
    Tensor? ImageFeatures,
    Tensor MergedInputsEmbeds,
    Tensor MergedAttentionMask,
    Tensor MergedPositionIds,
    Tensor? MergedLabels,
    Tensor? VisionFeatureLayerOutput,
    Tensor? VisionLastHiddenState,
    Tensor TextLastHiddenState,
    Tensor Logits,
    Tensor? Loss);

/// <summary>Result of <see cref="LlavaForConditionalGeneration.MergeInputIdsWithImageFeatures"/>.</summary>
public sealed record LlavaMerged(Tensor InputsEmbeds, Tensor AttentionMask, Tensor PositionIds, Tensor? Labels);

public sealed class LlavaForConditionalGeneration : nn.Module<LlavaInput, LlavaOutput>
{
    public CLIPVisionModel vision_tower;
    public LlavaMultiModalProjector multi_modal_projector;
    public LlamaForCausalLM language_model;
    readonly LlavaConfig _c;

    public LlavaForConditionalGeneration(LlavaConfig c) : base(nameof(LlavaForConditionalGeneration))
    {
        _c = c;
        vision_tower = new CLIPVisionModel(c.VisionConfig);
        multi_modal_projector = new LlavaMultiModalProjector(c);
        language_model = new LlamaForCausalLM(c.TextConfig);
        RegisterComponents();
    }

    public LlavaConfig Config => _c;

    /// <summary>Prompt tuning: rewrites the merged sequence (soft prompt prepended, mask/labels/positions extended)
    /// right before it enters the language model, in forward and in the first generation step. Null = none.</summary>
    public Func<LlavaMerged, LlavaMerged>? InputPrompt { get; set; }

    /// <summary>CLIP hidden_states[vision_feature_layer] (CLS included) and, when the whole tower ran, its last layer
    /// output. <paramref name="fullTower"/> false skips the layers after the selected one (HF runs them; their
    /// parameters then get no gradient either way).</summary>
    public (Tensor Selected, Tensor? Last) VisionFeatures(Tensor pixelValues, bool fullTower = true)
    {
        using var scope = torch.NewDisposeScope();
        int states = _c.VisionConfig.NumHiddenLayers + 1;
        int idx = _c.VisionFeatureLayer < 0 ? states + _c.VisionFeatureLayer : _c.VisionFeatureLayer;
        var o = vision_tower.Forward(pixelValues, fullTower ? null : idx);
        var selected = o.HiddenStates[idx];
        var last = o.LastHiddenState;
        return (selected.MoveToOuterDisposeScope(), last?.MoveToOuterDisposeScope());
    }

    /// <summary>Token embeddings of the text ids. Image-token slots are looked up as id 0: the merge never reads their
    /// rows, and an image_token_index outside the vocabulary (HF's default 32000 on a 32000-token Mistral) must not
    /// index past the table.</summary>
    public Tensor EmbedText(Tensor inputIds)
    {
        using var scope = torch.NewDisposeScope();
        var ids = inputIds.masked_fill(inputIds.eq(_c.ImageTokenIndex), 0);
        return language_model.model.embed_tokens.forward(ids).MoveToOuterDisposeScope();
    }

    /// <summary>Projected image features [num_images, N, text_hidden] from the selected CLIP hidden state.</summary>
    public Tensor ProjectImageFeatures(Tensor selected)
    {
        using var scope = torch.NewDisposeScope();
        var feats = _c.VisionFeatureSelectStrategy == "default" ? selected[.., 1.., ..] : selected;
        return multi_modal_projector.forward(feats).MoveToOuterDisposeScope();
    }

    /// <summary>HF 4.37's _merge_input_ids_with_image_features, reproduced step by step (including its quirks: left
    /// padding is assumed when no row ends with pad_token_id; a merged slot counts as free for image features when its
    /// embedding is all zeros; pads are not zeroed).</summary>
    public LlavaMerged MergeInputIdsWithImageFeatures(Tensor imageFeatures, Tensor inputsEmbeds, Tensor inputIds, Tensor? attentionMask, Tensor? labels)
    {
        using var scope = torch.NewDisposeScope();
        long numImages = imageFeatures.shape[0], n = imageFeatures.shape[1], d = imageFeatures.shape[2];
        int b = (int)inputIds.shape[0], l = (int)inputIds.shape[1];
        var ids = inputIds.to(ScalarType.Int64).cpu().data<long>().ToArray();
        var mask = attentionMask is null ? Enumerable.Repeat(1L, b * l).ToArray() : attentionMask.to(ScalarType.Int64).cpu().data<long>().ToArray();
        var lab = labels?.to(ScalarType.Int64).cpu().data<long>().ToArray();
        var textZero = inputsEmbeds.detach().eq(0).all(-1).cpu().data<bool>().ToArray();
        long imageToken = _c.ImageTokenIndex, pad = _c.EffectivePadTokenId;

        bool leftPadding = true;
        for (int r = 0; r < b; r++) if (ids[r * l + l - 1] == pad) leftPadding = false;
        long maxImages = 0;
        for (int r = 0; r < b; r++) maxImages = Math.Max(maxImages, ids.Skip(r * l).Take(l).LongCount(t => t == imageToken));
        int m = (int)(maxImages * (n - 1) + l);

        var newPos = new long[b * l];
        var nbImagePad = new long[b];
        for (int r = 0; r < b; r++)
        {
            long acc = 0;
            for (int i = 0; i < l; i++) { acc += ids[r * l + i] == imageToken ? n : 1; newPos[r * l + i] = acc - 1; }
            nbImagePad[r] = m - 1 - newPos[r * l + l - 1];
            if (leftPadding) for (int i = 0; i < l; i++) newPos[r * l + i] += nbImagePad[r];
        }

        long zeroRow = b * (long)l + numImages * n;
        var src = Enumerable.Repeat(zeroRow, b * m).ToArray();
        var isZero = Enumerable.Repeat(true, b * m).ToArray();
        var finalMask = new long[b * m];
        var finalLabels = Enumerable.Repeat(_c.IgnoreIndex, b * m).ToArray();
        for (int r = 0; r < b; r++)
            for (int i = 0; i < l; i++)
            {
                if (ids[r * l + i] == imageToken) continue;
                long j = newPos[r * l + i];
                if (j < 0 || j >= m) throw new MedPeftException($"LLaVA merge: text position {j} outside the merged length {m}");
                int at = r * m + (int)j;
                src[at] = r * (long)l + i;
                isZero[at] = textZero[r * l + i];
                finalMask[at] = mask[r * l + i];
                if (lab is not null) finalLabels[at] = lab[r * l + i];
            }

        long k = 0;
        var imageSlots = new List<int>();
        for (int r = 0; r < b; r++)
        {
            long run = 0;
            for (int j = 0; j < m; j++)
            {
                int at = r * m + j;
                if (!isZero[at]) continue;
                run++;
                if (run - 1 >= nbImagePad[r]) imageSlots.Add(at);
            }
        }
        if (imageSlots.Count != numImages * n)
            throw new MedPeftException($"LLaVA: the input has {ids.LongCount(t => t == imageToken)} image tokens but {numImages} images were given " +
                                       $"({imageSlots.Count} free slots for {numImages * n} image features; as in HF 4.37, a text token whose embedding is all " +
                                       "zeros, e.g. a zero-initialized pad row, also counts as a free slot)");
        foreach (var at in imageSlots) { src[at] = b * (long)l + k++; finalMask[at] |= 1; }

        var positions = new long[b * m];
        for (int r = 0; r < b; r++)
        {
            long acc = 0;
            for (int j = 0; j < m; j++) { acc += finalMask[r * m + j]; positions[r * m + j] = finalMask[r * m + j] == 0 ? 1 : acc - 1; }
        }

        var dev = inputsEmbeds.device;
        var table = torch.cat([inputsEmbeds.reshape(-1, d), imageFeatures.to(inputsEmbeds.dtype).reshape(-1, d),
                               torch.zeros(1, d, dtype: inputsEmbeds.dtype, device: dev)], 0);
        var merged = table.index_select(0, torch.tensor(src, device: dev)).view(b, m, d);
        var maskT = torch.tensor(finalMask, device: dev).view(b, m);
        var posT = torch.tensor(positions, device: dev).view(b, m);
        var labT = lab is null ? null : torch.tensor(finalLabels, device: dev).view(b, m);
        return new LlavaMerged(merged.MoveToOuterDisposeScope(), maskT.MoveToOuterDisposeScope(), posT.MoveToOuterDisposeScope(),
            labT?.MoveToOuterDisposeScope());
    }

    public override LlavaOutput forward(LlavaInput input)
    {
        using var scope = torch.NewDisposeScope();
        var embeds = EmbedText(input.InputIds);
        Tensor? imageFeatures = null, selected = null, last = null;
        LlavaMerged merged;
        if (input.PixelValues is not null && input.InputIds.shape[1] != 1)
        {
            (selected, last) = VisionFeatures(input.PixelValues);
            imageFeatures = ProjectImageFeatures(selected);
            merged = MergeInputIdsWithImageFeatures(imageFeatures, embeds, input.InputIds, input.AttentionMask, input.Labels);
        }
        else
        {
            long b = input.InputIds.shape[0], l = input.InputIds.shape[1];
            // Copies, so that moving the outputs out of this scope never touches the caller's tensors.
            var mask = input.AttentionMask?.to(ScalarType.Int64).clone() ?? torch.ones(b, l, dtype: ScalarType.Int64, device: embeds.device);
            var pos = (mask.cumsum(-1) - 1).masked_fill(mask.eq(0), 1);
            merged = new LlavaMerged(embeds, mask, pos, input.Labels?.clone());
        }

        if (InputPrompt is not null) merged = InputPrompt(merged);
        var lm = language_model.forward(new LlamaInput(merged.InputsEmbeds, merged.AttentionMask, merged.PositionIds));
        Tensor? loss = null;
        if (merged.Labels is not null)
            loss = ShiftedLoss(lm.Logits, merged.Labels, merged.AttentionMask, _c.IgnoreIndex);

        return new LlavaOutput(
            imageFeatures?.MoveToOuterDisposeScope(),
            merged.InputsEmbeds.MoveToOuterDisposeScope(),
            merged.AttentionMask.MoveToOuterDisposeScope(),
            merged.PositionIds.MoveToOuterDisposeScope(),
            merged.Labels?.MoveToOuterDisposeScope(),
            selected?.MoveToOuterDisposeScope(),
            last?.MoveToOuterDisposeScope(),
            lm.LastHiddenState.MoveToOuterDisposeScope(),
            lm.Logits.MoveToOuterDisposeScope(),
            loss?.MoveToOuterDisposeScope());
    }

    /// <summary>HF 4.37 LLaVA loss: logits[:, :-1] against labels[:, 1:], keeping only pairs whose target position has
    /// merged attention mask 1, then mean cross-entropy over targets ≠ ignore_index.</summary>
    public static Tensor ShiftedLoss(Tensor logits, Tensor labels, Tensor? attentionMask, long ignoreIndex = -100)
    {
        using var scope = torch.NewDisposeScope();
        long v = logits.shape[^1];
        var shiftLogits = logits[.., ..^1, ..];
        var shiftLabels = labels[.., 1..].to(ScalarType.Int64);
        if (attentionMask is not null)
            shiftLabels = shiftLabels.masked_fill(attentionMask[.., 1..].eq(0), ignoreIndex);
        var loss = nn.functional.cross_entropy(shiftLogits.reshape(-1, v).to(ScalarType.Float32), shiftLabels.reshape(-1), ignore_index: ignoreIndex);
        return loss.MoveToOuterDisposeScope();
    }

    /// <summary>Greedy decoding with a KV cache, step for step as HF 4.37's generate() drives LLaVA: the first step runs
    /// the merged prompt; later steps feed one token with the *unexpanded* prompt mask (+1 per generated token)
    /// extended by ones to the cache length, zeroing slots whose first-layer key sums to 0 over heads at channel 0
    /// (HF's heuristic; it indexes the extension, not the cache), and position = sum(mask) − 1. Returns the prompt
    /// ids (unexpanded) + new tokens (pad after EOS) and the raw next-token logits of every step.</summary>
    public GenerationResult Generate(Tensor pixelValues, Tensor inputIds, Tensor? attentionMask, GenerationOptions o, bool keepScores = true)
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        using var cache = new LlamaKVCache(_c.TextConfig.NumHiddenLayers);
        long b = inputIds.shape[0];
        var dev = language_model.model.embed_tokens.weight.device;
        var ids = inputIds.to(ScalarType.Int64).to(dev);
        var mask = (attentionMask ?? torch.ones_like(ids)).to(ScalarType.Int64).to(dev);
        var unfinished = torch.ones(b, dtype: ScalarType.Int64, device: dev);
        var scores = new List<Tensor>();
        Tensor? next = null;
        for (int t = 0; t < o.MaxNewTokens; t++)
        {
            using var stepScope = torch.NewDisposeScope();
            Tensor logits;
            if (t == 0)
            {
                var embeds = EmbedText(ids);
                var (selected, _) = VisionFeatures(pixelValues.to(dev), fullTower: false);
                var feats = ProjectImageFeatures(selected);
                var merged = MergeInputIdsWithImageFeatures(feats, embeds, ids, mask, null);
                if (InputPrompt is not null)
                {
                    long before = merged.AttentionMask.shape[1];
                    merged = InputPrompt(merged);
                    // The soft prompt is in the cache from now on: later steps' masks cover it too.
                    mask = torch.cat([torch.ones(b, merged.AttentionMask.shape[1] - before, dtype: ScalarType.Int64, device: dev), mask], 1);
                }
                logits = language_model.forward(new LlamaInput(merged.InputsEmbeds, merged.AttentionMask, merged.PositionIds, cache)).Logits;
            }
            else
            {
                long past = cache.Length;
                long extLen = past + 1 - mask.shape[1];
                Tensor full = mask;
                if (extLen > 0)
                {
                    var keyZero = cache.Keys(0)![.., .., .., 0].to(ScalarType.Float32).sum(1).eq(0);   // [B, past]
                    var ext = torch.ones(b, extLen, dtype: ScalarType.Int64, device: dev);
                    var hit = keyZero[.., ..(int)Math.Min(extLen, past)];
                    ext[.., ..(int)hit.shape[1]].masked_fill_(hit, 0);
                    full = torch.cat([mask, ext], 1);
                }
                var pos = full.sum(1, keepdim: true) - 1;
                var embeds = language_model.model.embed_tokens.forward(next!.unsqueeze(1));
                logits = language_model.forward(new LlamaInput(embeds, full, pos, cache)).Logits;
            }
            var last = logits[.., -1, ..];
            if (keepScores) scores.Add(last.to(ScalarType.Float32).clone().MoveToOuterDisposeScope());
            if (t < o.MinNewTokens) last = last.index_fill(1, torch.tensor(new long[] { o.EosTokenId }, device: dev), double.NegativeInfinity);
            var tok = last.argmax(-1);
            tok = tok * unfinished + o.PadTokenId * (1 - unfinished);
            ids = torch.cat([ids, tok.unsqueeze(1)], 1).MoveToOuterDisposeScope();
            mask = torch.cat([mask, torch.ones(b, 1, dtype: ScalarType.Int64, device: dev)], 1).MoveToOuterDisposeScope();
            unfinished = (unfinished * tok.ne(o.EosTokenId).to(ScalarType.Int64)).MoveToOuterDisposeScope();
            next = tok.MoveToOuterDisposeScope();
            if (unfinished.max().item<long>() == 0) break;
        }
        long len = ids.shape[1];
        var flat = ids.cpu().data<long>().ToArray();
        var rows = Enumerable.Range(0, (int)b).Select(i => flat.AsSpan(i * (int)len, (int)len).ToArray()).ToArray();
        foreach (var s in scores) s.MoveToOuterDisposeScope();
        return new GenerationResult(rows, keepScores ? scores.ToArray() : null);
    }

    /// <summary>Beam search (HF's, <see cref="Generation.BeamSearch"/>) with a KV cache: rows are expanded to
    /// B·num_beams, the first step runs the merged prompt, later steps feed only the newest token with the merged
    /// mask extended by ones and position = sum(mask) − 1 (HF's position ids from the mask); the cache and the mask
    /// follow the kept beams after every step; a soft prompt (<see cref="InputPrompt"/>) is applied to the first step as in
    /// greedy decoding. Returns the unexpanded prompt ids + the best hypothesis per row.</summary>
    public GenerationResult GenerateBeams(Tensor pixelValues, Tensor inputIds, Tensor? attentionMask, GenerationOptions o)
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        int k = Math.Max(1, o.NumBeams);
        var dev = language_model.model.embed_tokens.weight.device;
        var ids = inputIds.to(ScalarType.Int64).to(dev).repeat_interleave(k, 0);
        var promptMask = (attentionMask ?? torch.ones_like(inputIds)).to(ScalarType.Int64).to(dev).repeat_interleave(k, 0);
        var pixels = pixelValues.to(dev).repeat_interleave(k, 0);
        using var cache = new LlamaKVCache(_c.TextConfig.NumHiddenLayers);
        Tensor? mask = null;   // merged mask over the cache; owned here, outside the search's step scopes
        void Replace(Tensor next) { var kept = next.DetachFromDisposeScope(); mask?.Dispose(); mask = kept; }
        try
        {
            var result = Generation.BeamSearch(running =>
            {
                Tensor logits;
                if (mask is null)
                {
                    var embeds = EmbedText(running);
                    var (selected, _) = VisionFeatures(pixels, fullTower: false);
                    var merged = MergeInputIdsWithImageFeatures(ProjectImageFeatures(selected), embeds, running, promptMask, null);
                    // A soft prompt enters the cache with the first step (as in greedy); the merged mask then covers it.
                    if (InputPrompt is not null) merged = InputPrompt(merged);
                    logits = language_model.forward(new LlamaInput(merged.InputsEmbeds, merged.AttentionMask, merged.PositionIds, cache)).Logits;
                    Replace(merged.AttentionMask.clone());
                }
                else
                {
                    Replace(torch.cat([mask, torch.ones(mask.shape[0], 1, dtype: ScalarType.Int64, device: dev)], 1));
                    var pos = mask!.sum(1, keepdim: true) - 1;
                    var embeds = language_model.model.embed_tokens.forward(running[.., ^1..]);
                    logits = language_model.forward(new LlamaInput(embeds, mask, pos, cache)).Logits;
                }
                return logits[.., -1, ..].to(ScalarType.Float32);
            }, ids, o, reorder: rows => { cache.Reorder(rows); Replace(mask!.index_select(0, rows)); });
            return result;
        }
        finally { mask?.Dispose(); }
    }

    /// <summary>Greedy (<see cref="Generate"/>, HF 4.37's exact stepping) or beam search by num_beams.</summary>
    public GenerationResult GenerateAny(Tensor pixelValues, Tensor inputIds, Tensor? attentionMask, GenerationOptions o) =>
        o.NumBeams <= 1 ? Generate(pixelValues, inputIds, attentionMask, o, keepScores: false) : GenerateBeams(pixelValues, inputIds, attentionMask, o);
}
