using System.Text.Json;
using MedPeft.Models;
using MedPeft.Models.Llava;
using MedPeft.Tuning;
using TorchSharp;
using static TorchSharp.torch;
using static MedPeft.Tests.Tuning.FixtureModels;

namespace MedPeft.Tests.Tuning;

/// <summary>The exact field set of every adapter_config.json MedPeft writes, for the llava fixture model, against PEFT's
/// config dataclasses as of PEFT v0.11.0 (src/peft/config.py PeftConfigMixin/PeftConfig/PromptLearningConfig,
/// tuners/lora/config.py LoraConfig, tuners/ln_tuning/config.py LNTuningConfig, tuners/ia3/config.py IA3Config,
/// tuners/prefix_tuning/config.py PrefixTuningConfig, tuners/prompt_tuning/config.py PromptTuningConfig,
/// tuners/p_tuning/config.py PromptEncoderConfig); PEFT's save_pretrained writes asdict(config) with sort_keys, so the
/// file holds exactly the dataclass fields, sorted.</summary>
public class PeftConfigFieldsTests
{
    // PeftConfigMixin: peft_type, auto_mapping; PeftConfig: base_model_name_or_path, revision, task_type, inference_mode.
    static readonly string[] Base = ["auto_mapping", "base_model_name_or_path", "inference_mode", "peft_type", "revision", "task_type"];
    // PromptLearningConfig.
    static readonly string[] PromptLearning = ["num_attention_heads", "num_layers", "num_transformer_submodules", "num_virtual_tokens", "token_dim"];

    /// <summary>Trains nothing: applies the strategy, saves its adapter, returns the config's keys in file order.</summary>
    static (string[] Keys, JsonElement Config) Saved(string spec, string peftType)
    {
        using var model = LoadLlava();
        var strategy = TuningStrategy.Parse(spec, TowerLayout.Llava);
        strategy.Apply(model);
        var dir = Path.Combine(Path.GetTempPath(), "medpeft-fields-" + Guid.NewGuid().ToString("N"));
        try
        {
            Assert.Equal(peftType, MedPeft.Experiments.VqaJobs.SaveAdapter(model, strategy, dir));
            var root = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "adapter_config.json"))).RootElement.Clone();
            Assert.Equal(peftType, root.GetProperty("peft_type").GetString());
            return (root.EnumerateObject().Select(p => p.Name).ToArray(), root);
        }
        finally { if (Directory.Exists(dir)) Directory.Delete(dir, true); }
    }

    static void AssertFields(string[] actual, IEnumerable<string> expected)
    {
        var sorted = expected.Order(StringComparer.Ordinal).ToArray();
        Assert.Equal(sorted, actual.Order(StringComparer.Ordinal).ToArray());   // the exact set …
        Assert.Equal(sorted, actual);                                             // … written sorted (sort_keys=True)
    }

    [Fact]
    public void Lora_config_has_peft_0_11_LoraConfig_fields()
    {
        var (keys, _) = Saved("lora", "LORA");
        AssertFields(keys, [.. Base, "r", "target_modules", "lora_alpha", "lora_dropout", "fan_in_fan_out", "bias", "use_rslora", "modules_to_save",
            "init_lora_weights", "layers_to_transform", "layers_pattern", "rank_pattern", "alpha_pattern", "megatron_config", "megatron_core",
            "loftq_config", "use_dora", "layer_replication"]);
    }

    [Fact]
    public void Ln_tuning_config_has_peft_0_11_LNTuningConfig_fields()
    {
        var (keys, _) = Saved("ln", "LN_TUNING");
        AssertFields(keys, [.. Base, "target_modules", "modules_to_save"]);
    }

    [Fact]
    public void Ia3_config_has_peft_0_11_IA3Config_fields()
    {
        var (keys, _) = Saved("ia3", "IA3");
        AssertFields(keys, [.. Base, "target_modules", "feedforward_modules", "fan_in_fan_out", "modules_to_save", "init_ia3_weights"]);
    }

    [Theory]
    [InlineData("prefix", true)]
    [InlineData("ptuning", false)]
    public void Prefix_config_has_peft_0_11_PrefixTuningConfig_fields(string spec, bool projection)
    {
        var (keys, c) = Saved(spec, "PREFIX_TUNING");
        AssertFields(keys, [.. Base, .. PromptLearning, "encoder_hidden_size", "prefix_projection"]);
        Assert.Equal(projection, c.GetProperty("prefix_projection").GetBoolean());
        // PEFT fills a missing encoder_hidden_size with token_dim before saving (_prepare_prompt_learning_config).
        Assert.Equal(projection ? 512 : 64, c.GetProperty("encoder_hidden_size").GetInt32());
        Assert.Equal((64, 2, 4, 1), (c.GetProperty("token_dim").GetInt32(), c.GetProperty("num_layers").GetInt32(),
            c.GetProperty("num_attention_heads").GetInt32(), c.GetProperty("num_transformer_submodules").GetInt32()));
    }

    [Fact]
    public void Prompt_config_has_peft_0_11_PromptTuningConfig_fields()
    {
        var (keys, _) = Saved("prompt", "PROMPT_TUNING");
        AssertFields(keys, [.. Base, .. PromptLearning, "prompt_tuning_init", "prompt_tuning_init_text", "tokenizer_name_or_path", "tokenizer_kwargs"]);
    }

    [Fact]
    public void P_tuning_config_has_peft_0_11_PromptEncoderConfig_fields()
    {
        var (keys, c) = Saved("ptuning-v1", "P_TUNING");
        AssertFields(keys, [.. Base, .. PromptLearning, "encoder_reparameterization_type", "encoder_hidden_size", "encoder_num_layers", "encoder_dropout"]);
        Assert.Equal(("MLP", 64, 2, 0.0), (c.GetProperty("encoder_reparameterization_type").GetString(), c.GetProperty("encoder_hidden_size").GetInt32(),
            c.GetProperty("encoder_num_layers").GetInt32(), c.GetProperty("encoder_dropout").GetDouble()));
    }

    // ------------------------------------------------------------------ grouped-query attention (PEFT ≥ 0.12.0)

    [Theory]
    [InlineData("prefix")]
    [InlineData("ptuning")]
    public void Gqa_prefix_is_written_as_peft_0_12_writes_it_and_reloads(string spec)
    {
        // 6 heads, 2 KV heads of 8: PEFT ≥ 0.12.0 (PR #1901) uses token_dim = 2 × 8 = 16 and num_attention_heads = 2.
        torch.manual_seed(31);
        var config = LlavaConfig.FromJson("""
            { "image_token_index": 90, "pad_token_id": 3,
              "text_config": { "hidden_size": 48, "intermediate_size": 80, "num_hidden_layers": 2, "num_attention_heads": 6,
                               "num_key_value_heads": 2, "rope_theta": 10000.0, "vocab_size": 96, "pad_token_id": 3, "max_position_embeddings": 64 },
              "vision_config": { "hidden_size": 24, "intermediate_size": 40, "num_hidden_layers": 2, "num_attention_heads": 3,
                                 "image_size": 16, "patch_size": 8 } }
            """, "(test)");
        LlavaForConditionalGeneration Make() { torch.manual_seed(32); var m = new LlavaForConditionalGeneration(config); m.eval(); return m; }
        using var model = Make();
        var strategy = TuningStrategy.Parse(spec, TowerLayout.Llava);
        var report = strategy.Apply(model);
        if (spec == "prefix")   // the MLP's input is token_dim wide, as PEFT ≥ 0.12.0 builds it: 10·16 + (16·512 + 512) + (512·64 + 64)
            Assert.Equal(10 * 16 + (16 * 512 + 512) + (512 * 2 * 2 * 16 + 2 * 2 * 16), report.Trainable);
        var ids = torch.tensor(new long[] { 5, 90, 7, 8, 9, 10 }).reshape(1, 6);
        var pixels = torch.randn(1, 3, 16, 16);
        Tensor logits;
        using (torch.no_grad()) logits = model.forward(new LlavaInput(ids, pixels)).Logits.clone();
        var dir = Path.Combine(Path.GetTempPath(), "medpeft-gqa-" + Guid.NewGuid().ToString("N"));
        try
        {
            MedPeft.Experiments.VqaJobs.SaveAdapter(model, strategy, dir);
            var path = Path.Combine(dir, "adapter_config.json");
            var c = JsonDocument.Parse(File.ReadAllText(path)).RootElement;
            Assert.Equal((16, 2, 2), (c.GetProperty("token_dim").GetInt32(), c.GetProperty("num_attention_heads").GetInt32(), c.GetProperty("num_layers").GetInt32()));
            Assert.Equal(new long[] { 10, 2 * 2 * 16 }, Checkpoint.ReadSafetensors(Path.Combine(dir, "adapter_model.safetensors"))["prompt_embeddings"].shape);
            using (var fresh = Make())
            {
                PeftAdapters.Load(fresh, dir);
                using var _ = torch.no_grad();
                Fixtures.AssertClose(logits, fresh.forward(new LlavaInput(ids, pixels)).Logits, "reloaded", atol: 0, rtol: 0);
            }
            // A config that still says the hidden size loads too (PEFT ≥ 0.12.0 rescales it); anything else is named.
            File.WriteAllText(path, File.ReadAllText(path).Replace("\"token_dim\": 16", "\"token_dim\": 48"));
            using (var fresh = Make()) PeftAdapters.Load(fresh, dir);
            File.WriteAllText(path, File.ReadAllText(path).Replace("\"token_dim\": 48", "\"token_dim\": 20"));
            using (var fresh = Make())
            {
                var e = Assert.Throws<MedPeftException>(() => PeftAdapters.Load(fresh, dir));
                Assert.Contains("field \"token_dim\" is 20 but the model's key/value width is 16", e.Message);
                Assert.Contains("PEFT ≥ 0.12.0", e.Message);
            }
        }
        finally { if (Directory.Exists(dir)) Directory.Delete(dir, true); }
    }
}
