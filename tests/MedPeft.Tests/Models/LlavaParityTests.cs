using MedPeft.Models;
using MedPeft.Models.Clip;
using MedPeft.Models.Llama;
using MedPeft.Models.Llava;
using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace MedPeft.Tests.Models;

/// <summary>LlavaForConditionalGeneration (CLIP + projector + Llama) against fixtures/hf/llava (transformers 4.37.2).</summary>
public class LlavaParityTests(ITestOutputHelper output)
{
    void Report(string name, Tensor expected, Tensor actual)
    {
        if (expected.dtype == ScalarType.Int64 || expected.numel() == 0) return;
        var diff = (expected.to(ScalarType.Float64) - actual.detach().to(ScalarType.Float64)).abs().max().item<double>();
        output.WriteLine($"{name}: max |diff| {diff:E3}");
    }

    void Check(Tensor expected, Tensor actual, string name)
    {
        if (expected.shape.SequenceEqual(actual.shape)) Report(name, expected, actual);
        Fixtures.AssertClose(expected, actual, name);
    }

    /// <summary>Compares [B, L, …] tensors only at positions where <paramref name="mask"/> [B, L] is 1 (the README's rule for
    /// left-padded LLaVA rows, whose pad queries attend uniformly to every key).</summary>
    void CheckMasked(Tensor expected, Tensor actual, Tensor mask, string name)
    {
        Assert.True(expected.shape.SequenceEqual(actual.shape), $"{name}: shape [{string.Join(",", actual.shape)}] != expected [{string.Join(",", expected.shape)}]");
        var keep = mask.reshape(-1).nonzero().squeeze(1);
        long rest = expected.shape.Skip(2).Aggregate(1L, (a, b) => a * b);
        Check(expected.reshape(-1, rest).index_select(0, keep), actual.detach().reshape(-1, rest).index_select(0, keep), name + " (mask == 1)");
    }

    static LlavaForConditionalGeneration LoadFixtureModel()
    {
        var config = LlavaConfig.Load(Fixtures.Path("hf", "llava", "config.json"));
        var model = new LlavaForConditionalGeneration(config);
        Checkpoint.LoadSafetensors(model, Fixtures.Path("hf", "llava", "model.safetensors"));
        model.eval();
        return model;
    }

    [Fact]
    public void Llava_config_reads_hf_fields_and_defaults()
    {
        var c = LlavaConfig.Load(Fixtures.Path("hf", "llava", "config.json"));
        Assert.Equal(159, c.ImageTokenIndex);
        Assert.Equal(-2, c.VisionFeatureLayer);
        Assert.Equal("default", c.VisionFeatureSelectStrategy);
        Assert.Equal(0, c.PadTokenId);
        Assert.Equal(64, c.TextConfig.HiddenSize);
        Assert.Equal(4, c.TextConfig.KeyValueHeads);
        Assert.Equal(1e-6, c.TextConfig.RmsNormEps);
        Assert.Equal(10000.0, c.TextConfig.RopeTheta);
        Assert.Equal("silu", c.TextConfig.HiddenAct);
        Assert.Equal("quick_gelu", c.VisionConfig.HiddenAct);
        Assert.Equal(1e-5, c.VisionConfig.LayerNormEps);
        Assert.Equal(32, c.VisionConfig.HiddenSize);
        // No vision_config at all ⇒ LlavaConfig's CLIP ViT-L/14-336 defaults.
        var d = LlavaConfig.FromJson("{}", "(test)");
        Assert.Equal(1024, d.VisionConfig.HiddenSize);
        Assert.Equal(336, d.VisionConfig.ImageSize);
        Assert.Equal(14, d.VisionConfig.PatchSize);
        Assert.Equal(4096, d.TextConfig.HiddenSize);
        Assert.Equal(32, d.TextConfig.KeyValueHeads);
    }

    [Fact]
    public void Llava_state_dict_names_equal_hf_names()
    {
        using var model = LoadFixtureModel();
        var keys = Checkpoint.ReadSafetensors(Fixtures.Path("hf", "llava", "model.safetensors")).Keys.OrderBy(k => k, StringComparer.Ordinal);
        Assert.Equal(keys, model.state_dict().Keys.OrderBy(k => k, StringComparer.Ordinal));
    }

    [Fact]
    public void Llava_matches_hugging_face()
    {
        torch.set_num_threads(2);
        using var model = LoadFixtureModel();
        var x = Fixtures.Load("hf", "llava", "inputs.safetensors");
        var exp = Fixtures.Load("hf", "llava", "expected.safetensors");

        var o = model.forward(new LlavaInput(x["input_ids"], x["pixel_values"], x["attention_mask"], x["labels"]));
        Check(exp["vision_feature_layer_output"], o.VisionFeatureLayerOutput!, "vision_feature_layer_output");
        Check(exp["vision_last_hidden_state"], o.VisionLastHiddenState!, "vision_last_hidden_state");
        Check(exp["image_features"], o.ImageFeatures!, "image_features");
        Check(exp["merged_inputs_embeds"], o.MergedInputsEmbeds, "merged_inputs_embeds");
        Check(exp["merged_attention_mask"], o.MergedAttentionMask, "merged_attention_mask");
        Check(exp["merged_position_ids"], o.MergedPositionIds, "merged_position_ids");
        var mask = exp["merged_attention_mask"];
        CheckMasked(exp["text_last_hidden_state"], o.TextLastHiddenState, mask, "text_last_hidden_state");
        CheckMasked(exp["logits"], o.Logits, mask, "logits");
        Report("logits (all positions incl. pad queries; informational, not asserted)", exp["logits"], o.Logits);
        Check(exp["loss"], o.Loss!, "loss");

        o.Loss!.backward();
        var grads = exp.Keys.Where(k => k.StartsWith("grad.")).ToList();
        Assert.Equal(17, grads.Count);
        var parameters = model.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        foreach (var g in grads)
        {
            var p = parameters[g["grad.".Length..]];
            Check(exp[g], p.grad ?? torch.zeros_like(p), g);   // None in PyTorch (unused last CLIP layer) ⇒ zeros
        }

        var gen = model.Generate(x["pixel_values"], x["input_ids"], x["attention_mask"], new GenerationOptions(MaxNewTokens: 5, EosTokenId: 2, PadTokenId: 0));
        var ids = torch.tensor(gen.Sequences.SelectMany(r => r).ToArray()).reshape(gen.Sequences.Length, -1);
        output.WriteLine("generated_ids: " + string.Join(" | ", gen.Sequences.Select(r => string.Join(",", r))));
        Check(exp["generated_ids"], ids, "generated_ids");
        Check(exp["generated_scores"], torch.stack(gen.Scores!), "generated_scores");
    }

    [Fact]
    public void Llama_gqa_cache_matches_full_forward()
    {
        // Grouped-query attention with another rope_theta: incremental decoding with the KV cache must reproduce the
        // full causal forward.
        torch.manual_seed(7);
        var c = new LlamaConfig { VocabSize = 50, HiddenSize = 48, IntermediateSize = 96, NumHiddenLayers = 2, NumAttentionHeads = 6, NumKeyValueHeads = 2, RopeTheta = 500000, MaxPositionEmbeddings = 64 };
        c.Validate("(test)");
        using var lm = new LlamaForCausalLM(c);
        lm.eval();
        using var _ = torch.no_grad();
        var ids = torch.randint(0, 50, [2, 7], dtype: ScalarType.Int64);
        var full = lm.forward(new LlamaInput(InputIds: ids)).Logits;
        using var cache = new LlamaKVCache(c.NumHiddenLayers);
        var first = lm.forward(new LlamaInput(InputIds: ids[.., ..4], Cache: cache)).Logits;
        var steps = new List<Tensor> { first };
        for (int i = 4; i < 7; i++) steps.Add(lm.forward(new LlamaInput(InputIds: ids[.., i..(i + 1)], Cache: cache)).Logits);
        Fixtures.AssertClose(full, torch.cat(steps, 1), "cached vs full logits", atol: 1e-5, rtol: 1e-5);
    }

    [Fact]
    public void Llava_gqa_generate_agrees_with_full_forward()
    {
        // Another config shape (GQA, rope_theta 1e6, other token ids, "full" strategy, layer -1): each cached greedy step
        // must equal the last-position logits of a full forward over the prompt + the tokens generated so far.
        torch.manual_seed(11);
        var config = LlavaConfig.FromJson("""
            { "image_token_index": 90, "pad_token_id": 3, "vision_feature_layer": -1, "vision_feature_select_strategy": "full",
              "text_config": { "hidden_size": 48, "intermediate_size": 80, "num_hidden_layers": 2, "num_attention_heads": 6,
                               "num_key_value_heads": 2, "rope_theta": 1000000.0, "vocab_size": 96, "pad_token_id": 3, "max_position_embeddings": 64 },
              "vision_config": { "hidden_size": 24, "intermediate_size": 40, "num_hidden_layers": 2, "num_attention_heads": 3,
                                 "image_size": 16, "patch_size": 8, "hidden_act": "gelu" } }
            """, "(test)");
        using var model = new LlavaForConditionalGeneration(config);
        model.eval();
        // HF 4.37's merge treats an all-zero text embedding as a free image slot, so a zeroed pad row (fresh init) would
        // make left-padded prompts fail exactly as in HF; trained checkpoints (and the fixture) have a non-zero row.
        using (torch.no_grad()) model.language_model.model.embed_tokens.weight[3].normal_();
        var ids = torch.tensor(new long[] { 5, 90, 7, 8, 9, 3, 3, 90, 11, 12 }).reshape(2, 5);
        var mask = torch.tensor(new long[] { 1, 1, 1, 1, 1, 0, 0, 1, 1, 1 }).reshape(2, 5);
        var pixels = torch.randn(2, 3, 16, 16);
        var gen = model.Generate(pixels, ids, mask, new GenerationOptions(MaxNewTokens: 3, EosTokenId: 2, PadTokenId: 3));
        using var _ = torch.no_grad();
        for (int t = 0; t < 3; t++)
        {
            var prefix = torch.tensor(gen.Sequences.SelectMany(r => r.Take(5 + t)).ToArray()).reshape(2, 5 + t);
            var m = torch.cat([mask, torch.ones(2, t, dtype: ScalarType.Int64)], 1);
            var full = model.forward(new LlavaInput(prefix, pixels, m));
            Assert.Equal(5 + t + 5 - 1, full.Logits.shape[1]);   // 4 patches + CLS ("full") per image token
            Fixtures.AssertClose(full.Logits[.., -1, ..], gen.Scores![t], $"step {t}", atol: 1e-5, rtol: 1e-5);
        }
    }

    /// <summary>LLaVA-Med v1 7B shape (LLaMA-7B + CLIP ViT-L/14 at 224 + one linear projector) on the meta device.</summary>
    [Fact]
    public void Llava_med_7b_parameter_counts_on_meta()
    {
        var config = Presets.LlavaMed7b();   // LLaMA-7B (vocab 32004) + CLIP ViT-L/14 @ 224 + linear projector
        using var model = ModelUtils.OnMeta(() => new LlavaForConditionalGeneration(config));
        var ps = ModelUtils.UniqueParameters(model);
        long Count(string prefix) => ps.Where(p => p.Name.StartsWith(prefix)).Sum(p => p.Param.numel());
        Assert.Equal(6_738_448_384L, Count("language_model."));
        Assert.Equal(303_179_776L, Count("vision_tower."));
        Assert.Equal(4_198_400L, Count("multi_modal_projector."));
        Assert.Equal(7_045_826_560L, ps.Sum(p => p.Param.numel()));
        long rms = model.language_model.modules().OfType<LlamaRMSNorm>().Sum(m => m.weight.numel());
        Assert.Equal(266_240L, rms);
        Assert.Equal(DeviceType.META, model.language_model.model.embed_tokens.weight.device_type);
    }
}
