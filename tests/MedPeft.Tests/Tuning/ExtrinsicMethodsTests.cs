using System.Text.Json;
using MedPeft.Models;
using MedPeft.Models.Blip;
using MedPeft.Models.Llava;
using MedPeft.Tuning;
using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;
using static MedPeft.Tests.Tuning.FixtureModels;

namespace MedPeft.Tests.Tuning;

/// <summary>IA3, prefix tuning, P-tuning v2 and prompt tuning: counts from the formulas, merge, adapter files, training
/// touches only adapter tensors, gradients, and cached generation equal to full recomputation.</summary>
public class ExtrinsicMethodsTests(ITestOutputHelper output)
{
    /// <summary>Makes every adapter tensor non-trivial (IA3 starts at ones = identity).</summary>
    static void Perturb(nn.Module model)
    {
        using var _ = torch.no_grad();
        foreach (var l in Ia3.LayersOf(model)) l.Vector.copy_(1 + 0.3 * torch.randn_like(l.Vector));
    }

    // ------------------------------------------------------------------ counts (meta device, exact formulas)

    [Fact]
    public void Counts_on_llava_med_7b_meta_follow_the_formulas()
    {
        long Trainable(string spec)
        {
            using var model = ModelUtils.OnMeta(() => new LlavaForConditionalGeneration(Presets.LlavaMed7b()));
            var r = TuningStrategy.Parse(spec, TowerLayout.Llava).Apply(model);
            Assert.Equal(r.Trainable, r.Towers.Single(t => t.Tower == "llm").Trainable);   // all inside the LLM tower
            Assert.Equal(7_045_826_560L + r.Trainable, r.Total);
            return r.Trainable;
        }
        const long layers = 32, hidden = 4096, ffn = 11008;
        Assert.Equal(layers * (hidden + hidden + ffn), Trainable("ia3@llm"));                       // k, v out; down_proj in
        Assert.Equal(10 * layers * 2 * hidden, Trainable("ptuning@llm"));                           // N × layers × 2 × hidden
        Assert.Equal(10 * hidden + (hidden * 512 + 512) + (512 * layers * 2 * hidden + layers * 2 * hidden), Trainable("prefix@llm"));
        Assert.Equal(20 * hidden, Trainable("prompt@llm"));
        Assert.Equal(20 * hidden, Trainable("prompt"));   // no tower: the language input
    }

    [Fact]
    public void Counts_on_miss_base_meta_follow_the_formulas()
    {
        TrainableReport Apply(string spec)
        {
            var model = ModelUtils.OnMeta(() => new BlipForQuestionAnswering(BlipPresets.MissBase()));
            return TuningStrategy.Parse(spec, TowerLayout.Blip).Apply(model);
        }
        const long h = 768, ffn = 3072, layers = 12;
        // per layer: self key+value (out 768 each), cross key+value (out 768 each), attention/crossattention output.dense
        // (input 768 each, feed-forward semantics of "output.dense") and the FFN output.dense (input 3072).
        var ia3 = Apply("ia3@text");
        Assert.Equal(2 * layers * (4 * h + 2 * h + ffn), ia3.Trainable);
        Assert.Equal(layers * (4 * h + 2 * h + ffn), ia3.Towers.Single(t => t.Tower == "text_decoder").Trainable);
        Assert.Equal(10 * layers * 2 * h, Apply("ptuning@text_decoder").Trainable);
        Assert.Equal(2 * 10 * layers * 2 * h, Apply("ptuning").Trainable);   // both text towers, never vision
        Assert.Equal(20 * h, Apply("prompt").Trainable);                    // the question (text encoder) input
        Assert.Equal(20 * h, Apply("prompt").Towers.Single(t => t.Tower == "text_encoder").Trainable);
        var combo = Apply("ln+ia3@text_decoder");
        Assert.Equal(153_600 + layers * (4 * h + 2 * h + ffn), combo.Trainable);
        Assert.Throws<MedPeftException>(() => Apply("prefix@vision"));
    }

    [Theory]
    [InlineData("prefix", 10 * 768 + (768 * 512 + 512) + (512 * 12 * 2 * 768 + 12 * 2 * 768))]   // decoder only: no text encoder
    [InlineData("ptuning", 10 * 12 * 2 * 768)]
    [InlineData("prompt", 20 * 768)]                                                               // the caption decoder's input
    [InlineData("ia3", 12 * (4 * 768 + 2 * 768 + 3072))]
    public void Counts_on_blip_caption_meta_use_the_decoder(string spec, long expected)
    {
        var config = BlipPresets.MissBase();
        using var model = ModelUtils.OnMeta(() => new BlipForConditionalGeneration(config));
        var r = TuningStrategy.Parse(spec, TowerLayout.Blip).Apply(model);
        Assert.Equal(expected, r.Trainable);
        Assert.Equal(expected, r.Towers.Single(t => t.Tower == "text_decoder").Trainable);
    }

    // ------------------------------------------------------------------ IA3

    [Fact]
    public void Ia3_merged_logits_equal_unmerged_and_unmerge_restores()
    {
        torch.manual_seed(3);
        using var model = LoadLlava();
        var x = Fixtures.Load("hf", "llava", "inputs.safetensors");
        var w0 = model.named_parameters().ToDictionary(p => p.name, p => p.parameter.detach().clone());
        TuningStrategy.Parse("ia3", TowerLayout.Llava).Apply(model);
        var layers = Ia3.LayersOf(model);
        Assert.Contains(layers, l => l.Name.StartsWith("vision_tower.") && l.Name.EndsWith("k_proj"));   // PEFT suffix matching
        Assert.All(layers.Where(l => l.Name.EndsWith("down_proj")), l => Assert.True(l.IsFeedforward));
        using var _ = torch.no_grad();
        var identity = model.forward(Input(x)).Logits.clone();
        var plain = new Dictionary<string, Tensor>();
        Perturb(model);
        var unmerged = model.forward(Input(x)).Logits.clone();
        var mask = x["attention_mask"];
        Assert.True((unmerged - identity).abs().max().item<float>() > 1e-3, "vectors change the output");
        Ia3.Merge(model);
        var merged = model.forward(Input(x)).Logits.clone();
        var o = model.forward(Input(x));
        Fixtures.AssertClose(Masked(unmerged, o.MergedAttentionMask), Masked(merged, o.MergedAttentionMask), "merged", atol: 1e-5, rtol: 1e-5);
        Ia3.Unmerge(model);
        foreach (var (name, p) in model.named_parameters().Where(p => !p.name.EndsWith("ia3_l")))
            Fixtures.AssertClose(w0[name.Replace(".base_layer.", ".")], p, name, atol: 1e-5, rtol: 1e-5);   // wrapped: <module>.base_layer.weight
        Fixtures.AssertClose(Masked(unmerged, o.MergedAttentionMask), Masked(model.forward(Input(x)).Logits, o.MergedAttentionMask), "unmerged again", atol: 1e-5, rtol: 1e-5);
        Ia3.MergeAndUnload(model);
        Assert.DoesNotContain(model.state_dict().Keys, k => k.Contains("ia3"));
        Fixtures.AssertClose(Masked(unmerged, o.MergedAttentionMask), Masked(model.forward(Input(x)).Logits, o.MergedAttentionMask), "unloaded", atol: 1e-5, rtol: 1e-5);
    }

    [Fact]
    public void Ia3_on_blip_scales_output_or_input_as_peft_and_merges()
    {
        torch.manual_seed(4);
        using var model = LoadBlipVqa();
        var x = Fixtures.Load("hf", "blip_vqa", "inputs.safetensors");
        BlipVqaInput In() => new(x["pixel_values"], x["input_ids"], x["attention_mask"], Labels: x["labels"]);
        TuningStrategy.Parse("ia3@text", TowerLayout.Blip).Apply(model);
        var layers = Ia3.LayersOf(model);
        Assert.Contains(layers, l => l.Name.EndsWith(".crossattention.self.key"));   // PEFT suffix "key" hits cross-attention too
        Assert.All(layers, l => Assert.Equal(l.Name.EndsWith("output.dense"), l.IsFeedforward));
        Assert.All(layers, l => Assert.Equal(l.IsFeedforward ? l.Base.weight!.shape[1] : l.Base.weight!.shape[0], l.Vector.shape[0]));
        using var _ = torch.no_grad();
        Perturb(model);
        var a = model.forward(In()).DecoderLogits.clone();
        Ia3.Merge(model);
        Fixtures.AssertClose(a, model.forward(In()).DecoderLogits, "merged", atol: 1e-5, rtol: 1e-5);
    }

    // ------------------------------------------------------------------ adapter files

    static string Tmp() => Path.Combine(Path.GetTempPath(), "medpeft-ext-" + Guid.NewGuid().ToString("N"));

    static List<string> Fields(string json) =>
        JsonDocument.Parse(json).RootElement.EnumerateObject().Select(p => p.Name).OrderBy(n => n, StringComparer.Ordinal).ToList();

    [Theory]
    [InlineData("ia3@llm", "IA3")]
    [InlineData("prefix", "PREFIX_TUNING")]
    [InlineData("ptuning", "PREFIX_TUNING")]
    [InlineData("prompt", "PROMPT_TUNING")]
    public void Llava_adapter_save_load_round_trips_bit_exactly_with_peft_names(string spec, string peftType)
    {
        torch.manual_seed(7);
        var x = Fixtures.Load("hf", "llava", "inputs.safetensors");
        using var model = LoadLlava();
        var strategy = TuningStrategy.Parse(spec, TowerLayout.Llava);
        strategy.Apply(model);
        Perturb(model);
        Tensor logits;
        using (torch.no_grad()) logits = model.forward(Input(x)).Logits.clone();
        var dir = Tmp();
        try
        {
            Assert.Equal(peftType, MedPeft.Experiments.VqaJobs.SaveAdapter(model, strategy, dir));
            var json = File.ReadAllText(Path.Combine(dir, "adapter_config.json"));
            var cfg = JsonDocument.Parse(json).RootElement;
            Assert.Equal(peftType, cfg.GetProperty("peft_type").GetString());
            var saved = Checkpoint.ReadSafetensors(Path.Combine(dir, "adapter_model.safetensors"));
            var baseFields = new[] { "auto_mapping", "base_model_name_or_path", "inference_mode", "peft_type", "revision", "task_type" };
            if (peftType == "IA3")
            {
                Assert.Equal(baseFields.Concat(["fan_in_fan_out", "feedforward_modules", "init_ia3_weights", "modules_to_save", "target_modules"]).Order(StringComparer.Ordinal), Fields(json));
                Assert.All(saved.Keys, k => Assert.Matches(@"^base_model\.model\.language_model\.model\.layers\.\d+\.(self_attn\.[kv]_proj|mlp\.down_proj)\.ia3_l$", k));
                Assert.All(saved.Where(kv => kv.Key.Contains("down_proj")), kv => Assert.Equal(1, kv.Value.shape[0]));   // [1, in]
                Assert.All(saved.Where(kv => kv.Key.Contains("k_proj")), kv => Assert.Equal(1, kv.Value.shape[1]));      // [out, 1]
            }
            else
            {
                var prompt = new[] { "num_attention_heads", "num_layers", "num_transformer_submodules", "num_virtual_tokens", "token_dim" };
                var own = peftType == "PREFIX_TUNING" ? new[] { "encoder_hidden_size", "prefix_projection" }
                    : ["prompt_tuning_init", "prompt_tuning_init_text", "tokenizer_kwargs", "tokenizer_name_or_path"];
                Assert.Equal(baseFields.Concat(prompt).Concat(own).Order(StringComparer.Ordinal), Fields(json));
                Assert.Equal(["prompt_embeddings"], saved.Keys.ToList());
                var c = model.Config.TextConfig;
                long width = peftType == "PREFIX_TUNING" ? c.NumHiddenLayers * 2L * c.KeyValueHeads * c.HeadDim : c.HiddenSize;
                Assert.Equal(new[] { (long)cfg.GetProperty("num_virtual_tokens").GetInt32(), width }, saved["prompt_embeddings"].shape);
                if (spec == "prefix") Assert.True(cfg.GetProperty("prefix_projection").GetBoolean());
                if (spec == "ptuning") Assert.Equal(c.HiddenSize, cfg.GetProperty("encoder_hidden_size").GetInt32());   // PEFT: None → token_dim
            }

            using var fresh = LoadLlava();
            PeftAdapters.Load(fresh, dir);
            Assert.All(fresh.named_parameters().Where(p => p.name.Contains("prompt_encoder") || p.name.EndsWith("ia3_l")), p => Assert.False(p.parameter.requires_grad));
            using (torch.no_grad())
            {
                var o = fresh.forward(Input(x));
                Assert.True(Same(Masked(logits, o.MergedAttentionMask), Masked(o.Logits, o.MergedAttentionMask)), "reloaded adapter gives bit-identical logits");
            }
            var dir2 = Tmp();
            try
            {
                // Saved again from the reloaded model: the same tensors, bit for bit.
                if (peftType == "IA3") PeftAdapters.SaveIa3(fresh, dir2, PeftAdapters.ReadConfig(dir).Ia3!);
                else PeftAdapters.SavePromptLearning(fresh, dir2, PeftAdapters.ReadConfig(dir).Prefix, PeftAdapters.ReadConfig(dir).Prompt);
                var again = Checkpoint.ReadSafetensors(Path.Combine(dir2, "adapter_model.safetensors"));
                Assert.Equal(saved.Keys.Order(), again.Keys.Order());
                foreach (var (k, t) in saved) Assert.True(Same(t, again[k]), $"{k} differs after reload");
            }
            finally { Directory.Delete(dir2, true); }
        }
        finally { if (Directory.Exists(dir)) Directory.Delete(dir, true); }
    }

    [Fact]
    public void Ia3_adapter_parity_quantities_merge_to_the_adapted_logits()
    {
        // What `medpeft parity … --adapter` computes for an IA3 adapter: logits/loss with the adapter, gradients under
        // PEFT's keys and shapes, and the merged model's logits, which must equal the adapted ones.
        torch.manual_seed(8);
        var x = Fixtures.Load("hf", "llava", "inputs.safetensors");
        var dir = Tmp();
        try
        {
            using (var model = LoadLlava())
            {
                var strategy = TuningStrategy.Parse("ia3", TowerLayout.Llava);
                strategy.Apply(model);
                Perturb(model);
                MedPeft.Experiments.VqaJobs.SaveAdapter(model, strategy, dir);
            }
            var keys = Checkpoint.ReadSafetensors(Path.Combine(dir, "adapter_model.safetensors"));
            var expected = keys.ToDictionary(kv => "grad." + kv.Key, kv => kv.Value);
            using var fresh = LoadLlava();
            var got = PeftAdapters.LlavaAdapterTensors(fresh, dir, x, expected);
            foreach (var (k, t) in keys)
            {
                Assert.Equal(t.shape, got["grad." + k].shape);
                if (k.Contains("language_model")) Assert.True(got["grad." + k].abs().sum().item<float>() > 0, $"{k}: no gradient");
            }
            using var plain = LoadLlava();
            Tensor mask;
            using (torch.no_grad()) mask = plain.forward(Input(x)).MergedAttentionMask;
            Fixtures.AssertClose(Masked(got["logits_with_adapter"], mask), Masked(got["logits_merged"], mask), "merged", atol: 1e-4, rtol: 1e-4);   // the fixtures' tolerance
            Fixtures.AssertClose(got["loss_with_adapter"], got["loss_merged"], "loss", atol: 1e-5, rtol: 1e-5);
            Assert.Empty(Ia3.LayersOf(fresh));
        }
        finally { if (Directory.Exists(dir)) Directory.Delete(dir, true); }
    }

    [Fact]
    public void Adapter_that_does_not_fit_says_what()
    {
        using var model = LoadLlava();
        TuningStrategy.Parse("ptuning", TowerLayout.Llava).Apply(model);
        var dir = Tmp();
        try
        {
            PeftAdapters.SavePromptLearning(model, dir, new PrefixTuningConfig { PrefixProjection = false }, null);
            var path = Path.Combine(dir, "adapter_config.json");
            File.WriteAllText(path, File.ReadAllText(path).Replace("\"num_virtual_tokens\": 10", "\"num_virtual_tokens\": 7"));
            using var fresh = LoadLlava();
            var e = Assert.Throws<MedPeftException>(() => PeftAdapters.Load(fresh, dir));
            Assert.Contains("prompt_embeddings", e.Message);
            File.WriteAllText(path, File.ReadAllText(path).Replace("PREFIX_TUNING", "P_TUNING"));
            // A P_TUNING config over prefix-width embeddings ([N, layers·2·kv] is not [N, hidden]): the key's shapes are named.
            Assert.Contains("prompt_embeddings [", Assert.Throws<MedPeftException>(() => PeftAdapters.Load(LoadLlava(), dir)).Message);
        }
        finally { Directory.Delete(dir, true); }
    }

    // ------------------------------------------------------------------ training

    [Theory]
    [InlineData("ia3")]
    [InlineData("prefix")]
    [InlineData("ptuning")]
    [InlineData("prompt")]
    [InlineData("ln+ia3@llm")]
    public void Training_changes_only_adapter_tensors_and_every_one_gets_gradient(string spec)
    {
        torch.manual_seed(5);
        using var model = LoadLlava();
        var x = Fixtures.Load("hf", "llava", "inputs.safetensors");
        var report = TuningStrategy.Parse(spec, TowerLayout.Llava).Apply(model);
        var trainable = model.named_parameters().Where(p => p.parameter.requires_grad).ToList();
        Assert.Equal(report.TrainableNames.Order(), trainable.Select(p => p.name).Order());
        // CLIP's last layer is unused (vision_feature_layer −2): no gradient there, as in PEFT/HF. From step 1 on: LoRA's
        // A gets no gradient while B is still zero.
        AssertTrainsOnlyAdapters(model, trainable, () => model.forward(Input(x)).Loss!, steps: 3, gradFromStep: 1,
            unused: name => name.StartsWith("vision_tower.vision_model.encoder.layers.1.") || name.StartsWith("vision_tower.vision_model.post_layernorm"));
        output.WriteLine($"{spec}: {report.Trainable} trainable");
    }

    [Theory]
    [InlineData("prefix@text")]
    [InlineData("ptuning@text_decoder")]
    [InlineData("prompt")]
    [InlineData("prompt@text_decoder")]
    [InlineData("ia3@text_encoder")]
    public void Blip_vqa_trains_only_adapters_with_gradient_everywhere(string spec)
    {
        torch.manual_seed(6);
        using var model = LoadBlipVqa();
        var x = Fixtures.Load("hf", "blip_vqa", "inputs.safetensors");
        TuningStrategy.Parse(spec, TowerLayout.Blip).Apply(model);
        Perturb(model);
        var trainable = model.named_parameters().Where(p => p.parameter.requires_grad).ToList();
        Assert.NotEmpty(trainable);
        AssertTrainsOnlyAdapters(model, trainable, () =>
        {
            var o = model.forward(new BlipVqaInput(x["pixel_values"], x["input_ids"], x["attention_mask"], Labels: x["labels"]));
            Assert.Equal(x["labels"].shape[1], o.DecoderLogits.shape[1]);   // no logits for soft prompt tokens
            return o.Loss!;
        }, steps: 2);
    }

    [Fact]
    public void Llama_prefix_equals_hf_semantics_unrotated_prefix_and_positions_after_it()
    {
        // HF (past_key_values from PEFT): prefix keys never rotated, real tokens at positions N, N+1, …. MedPeft rotates
        // the prefix keys by −N instead and keeps positions 0, 1, … (RoPE is relative). Both must give the same logits.
        torch.manual_seed(13);
        var config = LlavaConfig.FromJson("""
            { "text_config": { "hidden_size": 48, "intermediate_size": 80, "num_hidden_layers": 2, "num_attention_heads": 6,
                               "num_key_value_heads": 2, "rope_theta": 10000.0, "vocab_size": 96, "max_position_embeddings": 64 },
              "vision_config": { "hidden_size": 24, "intermediate_size": 40, "num_hidden_layers": 1, "num_attention_heads": 3,
                                 "image_size": 16, "patch_size": 8 } }
            """, "(test)");
        using var model = new LlavaForConditionalGeneration(config);
        model.eval();
        TuningStrategy.Parse("prefix@llm", TowerLayout.Llava).Apply(model);
        var tower = PrefixTuning.TowersOf(model).Single();
        var embeds = torch.randn(2, 7, 48);
        var mask = torch.tensor(new long[] { 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1 }).reshape(2, 7);
        var positions = (mask.cumsum(-1) - 1).masked_fill(mask.eq(0), 1);
        using var _ = torch.no_grad();
        var ours = model.language_model.forward(new MedPeft.Models.Llama.LlamaInput(embeds, mask, positions)).Logits;
        tower.RopeTheta = null;   // HF: the prefix as stored, queries at their positions + N
        var hf = model.language_model.forward(new MedPeft.Models.Llama.LlamaInput(embeds, mask, positions + tower.NumVirtualTokens)).Logits;
        var rows = mask.reshape(-1).nonzero().squeeze(1);
        Fixtures.AssertClose(hf.reshape(-1, 96).index_select(0, rows), ours.reshape(-1, 96).index_select(0, rows), "logits", atol: 1e-5, rtol: 1e-5);
        tower.RopeTheta = 10000.0;
        var unshifted = model.language_model.forward(new MedPeft.Models.Llama.LlamaInput(embeds, mask, positions + tower.NumVirtualTokens)).Logits;
        Assert.True((unshifted - ours).abs().max().item<float>() > 1e-4, "the position shift matters, so the check can fail");
    }

    // ------------------------------------------------------------------ generation

    [Theory]
    [InlineData("prefix")]
    [InlineData("ptuning")]
    [InlineData("prompt")]
    public void Llava_cached_generation_equals_full_recompute(string spec) =>
        AssertCachedGenerationEqualsRecompute(spec, seed: 11, model => TuningStrategy.Parse(spec, TowerLayout.Llava).Apply(model));

    /// <summary>GQA, rope_theta 1e6, left padding: with the adapter <paramref name="apply"/> puts in place (prefix, soft
    /// prompt, prompt encoder), each cached greedy step must equal the last-position logits of a full forward over the
    /// prompt + the tokens generated so far, and the adapter must change the output.</summary>
    internal static void AssertCachedGenerationEqualsRecompute(string label, int seed, Action<LlavaForConditionalGeneration> apply)
    {
        torch.manual_seed(seed);
        var config = LlavaConfig.FromJson("""
            { "image_token_index": 90, "pad_token_id": 3, "vision_feature_layer": -1, "vision_feature_select_strategy": "full",
              "text_config": { "hidden_size": 48, "intermediate_size": 80, "num_hidden_layers": 2, "num_attention_heads": 6,
                               "num_key_value_heads": 2, "rope_theta": 1000000.0, "vocab_size": 96, "pad_token_id": 3, "max_position_embeddings": 64 },
              "vision_config": { "hidden_size": 24, "intermediate_size": 40, "num_hidden_layers": 2, "num_attention_heads": 3,
                                 "image_size": 16, "patch_size": 8, "hidden_act": "gelu" } }
            """, "(test)");
        using var model = new LlavaForConditionalGeneration(config);
        model.eval();
        using (torch.no_grad()) model.language_model.model.embed_tokens.weight[3].normal_();
        var ids = torch.tensor(new long[] { 5, 90, 7, 8, 9, 3, 3, 90, 11, 12 }).reshape(2, 5);
        var mask = torch.tensor(new long[] { 1, 1, 1, 1, 1, 0, 0, 1, 1, 1 }).reshape(2, 5);
        var pixels = torch.randn(2, 3, 16, 16);
        using var _ = torch.no_grad();
        var plain = model.Generate(pixels, ids, mask, new GenerationOptions(MaxNewTokens: 4, EosTokenId: 2, PadTokenId: 3));
        apply(model);
        model.eval();
        var gen = model.Generate(pixels, ids, mask, new GenerationOptions(MaxNewTokens: 4, EosTokenId: 2, PadTokenId: 3));
        Assert.True((plain.Scores![0] - gen.Scores![0]).abs().max().item<float>() > 1e-4, "the adapter is active in generation");
        for (int t = 0; t < 4; t++)
        {
            var prefix = torch.tensor(gen.Sequences.SelectMany(r => r.Take(5 + t)).ToArray()).reshape(2, 5 + t);
            var m = torch.cat([mask, torch.ones(2, t, dtype: ScalarType.Int64)], 1);
            var full = model.forward(new LlavaInput(prefix, pixels, m));
            Fixtures.AssertClose(full.Logits[.., -1, ..], gen.Scores![t], $"{label} step {t}", atol: 1e-5, rtol: 1e-5);
        }
    }

    [Theory]
    [InlineData("prefix@text")]
    [InlineData("prompt")]
    [InlineData("prompt@text_decoder")]
    public void Blip_generation_uses_the_adapter_step_by_step(string spec)
    {
        torch.manual_seed(12);
        using var model = LoadBlipVqa();
        var x = Fixtures.Load("hf", "blip_vqa", "inputs.safetensors");
        var pixels = x["pixel_values"];
        var ids = x["input_ids"];
        using var _ = torch.no_grad();
        var plain = model.Generate(pixels, ids, null, new GenerationOptions(MaxNewTokens: 4), keepScores: true);
        TuningStrategy.Parse(spec, TowerLayout.Blip).Apply(model);
        var gen = model.Generate(pixels, ids, null, new GenerationOptions(MaxNewTokens: 4), keepScores: true);
        Assert.True((plain.Scores![0] - gen.Scores![0]).abs().max().item<float>() > 1e-4, "the adapter is active in generation");
        for (int t = 0; t < gen.Scores!.Length; t++)
        {
            var dec = torch.tensor(gen.Sequences.SelectMany(r => r.Take(1 + t)).ToArray()).reshape(ids.shape[0], 1 + t);
            var logits = model.forward(new BlipVqaInput(pixels, ids, null, DecoderInputIds: dec)).DecoderLogits;
            Fixtures.AssertClose(logits[.., -1, ..], gen.Scores[t], $"{spec} step {t}", atol: 1e-5, rtol: 1e-5);
        }
    }
}
