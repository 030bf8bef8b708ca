using System.Text.Json.Nodes;
using MedPeft.Models;
using MedPeft.Models.Blip;
using MedPeft.Models.Llava;
using TorchSharp;
using static TorchSharp.torch;

namespace MedPeft.Experiments;

/// <summary>One compared tensor: max |actual − expected| (where compared) and whether every element is within
/// atol + rtol·|expected| (integers: exactly equal).</summary>
public sealed record ParityEntry(string Name, double MaxAbsDiff, bool Ok, string? Error = null);

/// <summary>`medpeft parity`: recompute, with MedPeft's implementation, every tensor of a golden file made by the
/// Python reference (the fixture layout: model folder + inputs.safetensors + expected.safetensors, calls as in
/// fixtures/hf/README.md) and compare with its tolerance. Works on any folder built that way.</summary>
public static class Parity
{
    public const double Atol = 1e-4, Rtol = 1e-4;

    /// <param name="adapterDir">A PEFT adapter folder (LORA, LN_TUNING, IA3, PREFIX_TUNING, PROMPT_TUNING, P_TUNING)
    /// applied to the model; the expected file then holds the adapter tensors (logits_with_adapter, grad.&lt;adapter
    /// key&gt;, logits_merged, …). Soft-prompt adapters (PROMPT_TUNING, P_TUNING) make the LLM input N virtual tokens
    /// longer: their logits_with_adapter is compared at the real tokens' positions — the last L positions of the
    /// output, i.e. the merged (image + text) sequence after the N virtual tokens, where the expected tensor has those
    /// L positions (as PEFT users usually slice logits[:, N:]); an expected tensor with all N + L positions (PEFT's raw
    /// output) is compared as a whole, the virtual positions always, the rest where the merged mask is 1.</param>
    /// <param name="dtype">Weight dtype of the recomputation (auto = the checkpoint's when 16-bit). A 16-bit run is a
    /// smoke check against fp32 references, with the dtype's tolerance (<see cref="Tolerance"/>), not a parity claim.</param>
    public static List<ParityEntry> Run(string modelDir, string inputsPath, string expectedPath, string? adapterDir = null, string dtype = "auto")
    {
        var dt = Precision.Resolve(dtype, modelDir);
        var (atol, rtol) = Tolerance(dt);
        return Precision.WithDefault(dt, () => Run(modelDir, inputsPath, expectedPath, adapterDir, atol, rtol));
    }

    /// <summary>Elementwise tolerance per weight dtype: fp32 the fixtures' 1e-4 + 1e-4·|e|; fp16 (10 mantissa bits)
    /// 1e-2 + 1e-2·|e|; bf16 (7 bits) 5e-2 + 5e-2·|e|.</summary>
    public static (double Atol, double Rtol) Tolerance(ScalarType dtype) => dtype switch
    {
        ScalarType.BFloat16 => (5e-2, 5e-2),
        ScalarType.Float16 => (1e-2, 1e-2),
        _ => (Atol, Rtol),
    };

    static List<ParityEntry> Run(string modelDir, string inputsPath, string expectedPath, string? adapterDir, double atol, double rtol)
    {
        var configPath = Path.Combine(modelDir, "config.json");
        if (!File.Exists(configPath)) throw new MedPeftException($"{configPath}: file not found");
        var arch = (JsonNode.Parse(File.ReadAllText(configPath))?["architectures"] as JsonArray)?.FirstOrDefault()?.GetValue<string>()
                   ?? throw new MedPeftException($"{configPath}: field \"architectures\" missing");
        var inputs = Checkpoint.ReadSafetensors(inputsPath);
        var expected = Checkpoint.ReadSafetensors(expectedPath);
        var weights = Path.Combine(modelDir, "model.safetensors");
        using var scope = torch.NewDisposeScope();
        var computed = arch switch
        {
            "BlipForQuestionAnswering" => BlipVqa(BlipConfig.Load(configPath), weights, inputs, expected),
            "BlipForConditionalGeneration" => BlipCaption(BlipConfig.Load(configPath), weights, inputs, expected),
            "LlavaForConditionalGeneration" when adapterDir is not null => LlavaAdapter(LlavaConfig.Load(configPath), weights, adapterDir, inputs, expected),
            _ when adapterDir is not null => throw new MedPeftException($"--adapter: adapters are supported for LLaVA checkpoints only so far ({configPath} is {arch})"),
            "LlavaForConditionalGeneration" => Llava(LlavaConfig.Load(configPath), weights, inputs, expected),
            _ => throw new MedPeftException($"{configPath}: architecture \"{arch}\" is not supported by parity yet"),
        };
        if (!computed.ContainsKey("merged_attention_mask") && inputs.ContainsKey("input_ids") && arch == "LlavaForConditionalGeneration")
            computed["merged_attention_mask"] = MergedMask(LlavaConfig.Load(configPath), weights, inputs);
        // LLaVA's left-padded rows: pad queries see only masked keys, so those positions are compared only where
        // the merged attention mask is 1 (fixtures/hf/README.md).
        computed.TryGetValue("merged_attention_mask", out var merged);
        int virtualTokens = adapterDir is null ? 0 : SoftPromptLength(adapterDir);
        return expected.Select(kv =>
        {
            if (!computed.TryGetValue(kv.Key, out var actual)) return new ParityEntry(kv.Key, double.NaN, false, "not computed");
            if (merged is null || !MaskedNames.Contains(kv.Key)) return Compare(kv.Key, kv.Value, actual, null, atol, rtol);
            var mask = merged;
            if (virtualTokens > 0 && actual.dim() >= 2 && actual.shape[1] == merged.shape[1] + virtualTokens)
            {
                if (kv.Value.dim() >= 2 && kv.Value.shape[1] == merged.shape[1]) actual = actual[.., virtualTokens..];   // the real tokens
                else mask = torch.cat([torch.ones(merged.shape[0], virtualTokens, dtype: merged.dtype), merged], 1);
            }
            return kv.Value.dim() >= 2 && kv.Value.shape[1] == mask.shape[1] ? Compare(kv.Key, kv.Value, actual, PositionMask(mask, kv.Value), atol, rtol)
                : Compare(kv.Key, kv.Value, actual, null, atol, rtol);
        }).ToList();
    }

    /// <summary>N for adapters that prepend N soft tokens to the LLM input (PROMPT_TUNING, P_TUNING), else 0 (prefix
    /// tuning adds keys/values, not positions).</summary>
    static int SoftPromptLength(string adapterDir)
    {
        var c = MedPeft.Tuning.PeftAdapters.ReadConfig(adapterDir);
        return c.Prompt?.NumVirtualTokens ?? c.PTuning?.NumVirtualTokens ?? 0;
    }

    static readonly HashSet<string> MaskedNames = ["logits", "text_last_hidden_state", "logits_with_adapter", "logits_merged"];

    /// <summary>[B, L] mask broadcast to a [B, L, …] tensor.</summary>
    static Tensor PositionMask(Tensor mask, Tensor like)
    {
        var m = mask.to(ScalarType.Bool);
        while (m.dim() < like.dim()) m = m.unsqueeze(-1);
        return m.expand(like.shape);
    }

    /// <summary>Elementwise tolerance check, optionally only where <paramref name="where"/> is true.</summary>
    public static ParityEntry Compare(string name, Tensor expected, Tensor actual, Tensor? where = null, double atol = Atol, double rtol = Rtol)
    {
        if (!expected.shape.SequenceEqual(actual.shape))
            return new ParityEntry(name, double.NaN, false, $"shape [{string.Join(",", actual.shape)}] != expected [{string.Join(",", expected.shape)}]");
        using var scope = torch.NewDisposeScope();
        var e = expected.to(ScalarType.Float64);
        var a = actual.detach().cpu().to(ScalarType.Float64);
        var diff = (a - e).abs();
        var excess = diff - (expected.is_floating_point() ? atol + rtol * e.abs() : torch.zeros_like(e));
        if (where is not null) { diff = diff.masked_fill(where.logical_not(), 0); excess = excess.masked_fill(where.logical_not(), -1); }
        double max = diff.numel() == 0 ? 0 : diff.max().item<double>();
        bool ok = excess.numel() == 0 || excess.max().item<double>() <= 0;
        return new ParityEntry(name, max, ok);
    }

    static Dictionary<string, Tensor> Grads(nn.Module model, IEnumerable<string> expectedKeys)
    {
        var parameters = model.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        var result = new Dictionary<string, Tensor>();
        foreach (var key in expectedKeys.Where(k => k.StartsWith("grad.")))
            if (parameters.TryGetValue(key[5..], out var p))
                result[key] = p.grad?.detach().clone() ?? torch.zeros_like(p);   // PyTorch's None is stored as zeros
        return result;
    }

    static Tensor Ids(GenerationResult g) => torch.tensor(g.Sequences.SelectMany(r => r).ToArray()).reshape(g.Sequences.Length, -1);

    static Dictionary<string, Tensor> BlipVqa(BlipConfig config, string weights, Dictionary<string, Tensor> x, Dictionary<string, Tensor> expected)
    {
        var model = new BlipForQuestionAnswering(config);
        Checkpoint.LoadSafetensors(model, weights);
        model.eval();
        var r = new Dictionary<string, Tensor>();
        var o = model.forward(new BlipVqaInput(x["pixel_values"], x["input_ids"], x["attention_mask"], Labels: x["labels"]));
        r["vision_last_hidden_state"] = o.ImageEmbeds; r["vision_pooler_output"] = o.VisionPoolerOutput;
        r["text_encoder_last_hidden_state"] = o.QuestionEmbeds; r["decoder_logits"] = o.DecoderLogits; r["loss"] = o.Loss!;
        o.Loss!.backward();
        foreach (var kv in Grads(model, expected.Keys)) r[kv.Key] = kv.Value;
        if (x.ContainsKey("decoder_input_ids"))
            using (torch.no_grad())
            {
                var m = model.forward(new BlipVqaInput(x["pixel_values"], x["input_ids"], x["attention_mask"], x["decoder_input_ids"], x["decoder_attention_mask"], x["labels_masked"]));
                r["decoder_logits_masked"] = m.DecoderLogits; r["loss_masked"] = m.Loss!;
            }
        var gen = model.Generate(x["pixel_values"], x["input_ids"], x["attention_mask"], new GenerationOptions(MaxNewTokens: GeneratedSteps(expected)), keepScores: true);
        r["generated_ids"] = Ids(gen); r["generated_scores"] = torch.stack(gen.Scores!);
        return r;
    }

    static Dictionary<string, Tensor> BlipCaption(BlipConfig config, string weights, Dictionary<string, Tensor> x, Dictionary<string, Tensor> expected)
    {
        var model = new BlipForConditionalGeneration(config);
        Checkpoint.LoadSafetensors(model, weights);
        model.eval();
        var r = new Dictionary<string, Tensor>();
        var o = model.forward(new BlipCaptionInput(x["pixel_values"], x["input_ids"], x["attention_mask"], x["labels"]));
        r["vision_last_hidden_state"] = o.ImageEmbeds; r["logits"] = o.Logits; r["loss"] = o.Loss!;
        o.Loss!.backward();
        foreach (var kv in Grads(model, expected.Keys)) r[kv.Key] = kv.Value;
        var gen = model.Generate(x["pixel_values"], new GenerationOptions(MaxNewTokens: GeneratedSteps(expected)), keepScores: true);
        r["generated_ids"] = Ids(gen); r["generated_scores"] = torch.stack(gen.Scores!);
        return r;
    }

    static Dictionary<string, Tensor> Llava(LlavaConfig config, string weights, Dictionary<string, Tensor> x, Dictionary<string, Tensor> expected)
    {
        var model = new LlavaForConditionalGeneration(config);
        Checkpoint.LoadSafetensors(model, weights);
        model.eval();
        var r = new Dictionary<string, Tensor>();
        var o = model.forward(new LlavaInput(x["input_ids"], x["pixel_values"], x["attention_mask"], x.GetValueOrDefault("labels")));
        void Put(string name, Tensor? t) { if (t is not null) r[name] = t; }
        Put("vision_feature_layer_output", o.VisionFeatureLayerOutput); Put("vision_last_hidden_state", o.VisionLastHiddenState);
        Put("image_features", o.ImageFeatures); Put("merged_inputs_embeds", o.MergedInputsEmbeds);
        Put("merged_attention_mask", o.MergedAttentionMask); Put("merged_position_ids", o.MergedPositionIds);
        Put("text_last_hidden_state", o.TextLastHiddenState); Put("logits", o.Logits); Put("loss", o.Loss);
        if (o.Loss is not null)
        {
            o.Loss.backward();
            foreach (var kv in Grads(model, expected.Keys)) r[kv.Key] = kv.Value;
        }
        // The fixtures' generate call passes pad_token_id=0, eos_token_id=2 (Llama's eos).
        var gen = model.Generate(x["pixel_values"], x["input_ids"], x["attention_mask"],
            new GenerationOptions(MaxNewTokens: GeneratedSteps(expected), EosTokenId: (int)(config.TextConfig.EosTokenId ?? 2), PadTokenId: (int)Math.Max(0, config.EffectivePadTokenId)));
        r["generated_ids"] = Ids(gen);
        if (gen.Scores is not null) r["generated_scores"] = torch.stack(gen.Scores);
        return r;
    }

    static Dictionary<string, Tensor> LlavaAdapter(LlavaConfig config, string weights, string adapterDir, Dictionary<string, Tensor> x, Dictionary<string, Tensor> expected)
    {
        var model = new LlavaForConditionalGeneration(config);
        Checkpoint.LoadSafetensors(model, weights);
        model.eval();
        return MedPeft.Tuning.PeftAdapters.LlavaAdapterTensors(model, adapterDir, x, expected);
    }

    /// <summary>The merged attention mask of the plain model, for masking adapter logits (the adapter does not change it).</summary>
    static Tensor MergedMask(LlavaConfig config, string weights, Dictionary<string, Tensor> x)
    {
        using var model = new LlavaForConditionalGeneration(config);
        Checkpoint.LoadSafetensors(model, weights);
        model.eval();
        using var noGrad = torch.no_grad();
        return model.forward(new LlavaInput(x["input_ids"], x["pixel_values"], x["attention_mask"])).MergedAttentionMask.clone();
    }

    /// <summary>Greedy steps to run: as many as the reference recorded scores for (it stops early only when every
    /// row has ended, which the same number of steps reproduces); 5 (the fixtures' max_new_tokens) otherwise.</summary>
    static int GeneratedSteps(Dictionary<string, Tensor> expected) =>
        expected.TryGetValue("generated_scores", out var s) ? (int)s.shape[0] : 5;
}
