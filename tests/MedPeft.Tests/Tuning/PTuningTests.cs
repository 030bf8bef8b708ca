using System.Text.Json;
using MedPeft.Models;
using MedPeft.Models.Blip;
using MedPeft.Models.Llava;
using MedPeft.Tuning;
using TorchSharp;
using static TorchSharp.torch;
using static MedPeft.Tests.Tuning.FixtureModels;

namespace MedPeft.Tests.Tuning;

/// <summary>P-tuning v1 ("ptuning-v1", PEFT's P_TUNING): the prompt encoder's layout, counts, the adapter file, training
/// and cached generation.</summary>
public class PTuningTests
{
    static string Tmp() => Path.Combine(Path.GetTempPath(), "medpeft-ptv1-" + Guid.NewGuid().ToString("N"));

    static Dictionary<string, ITuningMethod> With(PromptEncoderConfig c) => new() { ["ptuning-v1"] = new PTuningMethod(c) };

    [Fact]
    public void Strategy_parser_accepts_the_hyphenated_name_and_keeps_ptuning_as_v2()
    {
        var s = TuningStrategy.Parse("ptuning-v1@llm", TowerLayout.Llava);
        Assert.IsType<PTuningMethod>(s.Terms.Single().Method);
        Assert.Equal(["llm"], s.Terms.Single().Towers);
        Assert.IsType<PrefixTuningMethod>(TuningStrategy.Parse("ptuning", TowerLayout.Llava).Terms.Single().Method);
        Assert.False(((PrefixTuningMethod)TuningMethods.All["ptuning"]).Config.PrefixProjection);
    }

    // ------------------------------------------------------------------ encoder layout and counts

    [Theory]
    [InlineData("MLP", null, 2)]
    [InlineData("MLP", 24, 2)]
    [InlineData("LSTM", null, 2)]
    [InlineData("LSTM", 12, 3)]
    public void Encoder_has_peft_parameter_names_shapes_and_count(string type, int? hidden, int layers)
    {
        using var model = LoadLlava();
        const long n = 5, d = 64;   // fixture hidden size
        long h = hidden ?? d;       // PEFT: encoder_hidden_size null → token_dim
        var c = new PromptEncoderConfig { NumVirtualTokens = (int)n, EncoderHiddenSize = hidden, EncoderReparameterizationType = type, EncoderNumLayers = layers };
        var report = TuningStrategy.Parse("ptuning-v1", TowerLayout.Llava, With(c)).Apply(model);
        var shapes = model.named_parameters().Where(p => p.parameter.requires_grad)
            .ToDictionary(p => p.name["language_model.prompt_encoder.".Length..], p => p.parameter.shape);
        Assert.All(model.named_parameters().Where(p => p.parameter.requires_grad), p => Assert.StartsWith("language_model.prompt_encoder.", p.name));
        var expected = new Dictionary<string, long[]> { ["embedding.weight"] = [n, d] };
        long count = n * d;
        if (type == "MLP")
        {
            // PEFT: Linear(d, h) → ReLU → Linear(h, h) → ReLU → Linear(h, d)
            expected["mlp_head.0.weight"] = [h, d]; expected["mlp_head.0.bias"] = [h];
            expected["mlp_head.2.weight"] = [h, h]; expected["mlp_head.2.bias"] = [h];
            expected["mlp_head.4.weight"] = [d, h]; expected["mlp_head.4.bias"] = [d];
            count += (d * h + h) + (h * h + h) + (h * d + d);
        }
        else
        {
            // PEFT: bidirectional LSTM(d → h, layers) then Linear(2h, 2h) → ReLU → Linear(2h, d)
            for (int l = 0; l < layers; l++)
                foreach (var suffix in new[] { "", "_reverse" })
                {
                    long input = l == 0 ? d : 2 * h;
                    expected[$"lstm_head.weight_ih_l{l}{suffix}"] = [4 * h, input];
                    expected[$"lstm_head.weight_hh_l{l}{suffix}"] = [4 * h, h];
                    expected[$"lstm_head.bias_ih_l{l}{suffix}"] = [4 * h];
                    expected[$"lstm_head.bias_hh_l{l}{suffix}"] = [4 * h];
                    count += 4 * h * input + 4 * h * h + 8 * h;
                }
            expected["mlp_head.0.weight"] = [2 * h, 2 * h]; expected["mlp_head.0.bias"] = [2 * h];
            expected["mlp_head.2.weight"] = [d, 2 * h]; expected["mlp_head.2.bias"] = [d];
            count += (4 * h * h + 2 * h) + (2 * h * d + d);
        }
        Assert.Equal(expected.Keys.Order(StringComparer.Ordinal), shapes.Keys.Order(StringComparer.Ordinal));
        foreach (var (k, s) in expected) Assert.Equal(s, shapes[k]);
        Assert.Equal(count, report.Trainable);   // embedding + every encoder parameter
    }

    [Fact]
    public void Mlp_encoder_output_is_peft_relu_chain_of_the_embedding()
    {
        using var model = LoadLlava();
        TuningStrategy.Parse("ptuning-v1", TowerLayout.Llava, With(new PromptEncoderConfig { NumVirtualTokens = 4, EncoderHiddenSize = 16 })).Apply(model);
        var t = PromptTuning.TowersOf(model).Single();
        var enc = t.Reparameterization!;
        using var _ = torch.no_grad();
        Tensor W(int i) => ((TorchSharp.Modules.Linear)enc.mlp_head[i]).weight!;
        Tensor B(int i) => ((TorchSharp.Modules.Linear)enc.mlp_head[i]).bias!;
        var e = enc.embedding.weight!;
        var manual = torch.nn.functional.relu(torch.nn.functional.relu(e.matmul(W(0).t()) + B(0)).matmul(W(2).t()) + B(2)).matmul(W(4).t()) + B(4);
        Fixtures.AssertClose(manual, t.Prompt(), "mlp", atol: 1e-6, rtol: 1e-6);
        Assert.True((t.Prompt() - e).abs().max().item<float>() > 1e-3, "the prompt is the encoder's output, not the raw embedding");
    }

    [Fact]
    public void Bad_options_give_one_line_errors()
    {
        using var model = LoadLlava();
        Assert.Contains("encoder_reparameterization_type", Assert.Throws<MedPeftException>(() =>
            TuningStrategy.Parse("ptuning-v1", TowerLayout.Llava, With(new PromptEncoderConfig { EncoderReparameterizationType = "GRU" })).Apply(model)).Message);
        Assert.Contains("encoder_num_layers", Assert.Throws<MedPeftException>(() =>
            TuningStrategy.Parse("ptuning-v1", TowerLayout.Llava, With(new PromptEncoderConfig { EncoderNumLayers = 3 })).Apply(model)).Message);
    }

    // ------------------------------------------------------------------ adapter file

    [Theory]
    [InlineData("MLP")]
    [InlineData("LSTM")]
    public void Adapter_is_peft_p_tuning_and_reloads_bit_exactly(string type)
    {
        torch.manual_seed(21);
        var x = Fixtures.Load("hf", "llava", "inputs.safetensors");
        using var model = LoadLlava();
        var config = new PromptEncoderConfig { NumVirtualTokens = 6, EncoderReparameterizationType = type, EncoderHiddenSize = type == "LSTM" ? 16 : null };
        var strategy = TuningStrategy.Parse("ptuning-v1", TowerLayout.Llava, With(config));
        strategy.Apply(model);
        Tensor logits, prompt;
        using (torch.no_grad())
        {
            logits = model.forward(Input(x)).Logits.clone();
            prompt = PromptTuning.TowersOf(model).Single().Prompt().clone();
        }
        var dir = Tmp();
        try
        {
            Assert.Equal("P_TUNING", MedPeft.Experiments.VqaJobs.SaveAdapter(model, strategy, dir));
            var json = File.ReadAllText(Path.Combine(dir, "adapter_config.json"));
            var cfg = JsonDocument.Parse(json).RootElement;
            // PEFT 0.11 PromptEncoderConfig = PeftConfig + PromptLearningConfig + the encoder's four fields.
            Assert.Equal(new[]
            {
                "auto_mapping", "base_model_name_or_path", "encoder_dropout", "encoder_hidden_size", "encoder_num_layers",
                "encoder_reparameterization_type", "inference_mode", "num_attention_heads", "num_layers", "num_transformer_submodules",
                "num_virtual_tokens", "peft_type", "revision", "task_type", "token_dim",
            }, cfg.EnumerateObject().Select(p => p.Name).ToArray());   // written sorted, as json.dumps(sort_keys=True)
            Assert.Equal("P_TUNING", cfg.GetProperty("peft_type").GetString());
            Assert.Equal(type, cfg.GetProperty("encoder_reparameterization_type").GetString());
            Assert.Equal(type == "LSTM" ? 16 : 64, cfg.GetProperty("encoder_hidden_size").GetInt32());   // null → token_dim
            Assert.Equal(2, cfg.GetProperty("encoder_num_layers").GetInt32());
            Assert.Equal(0.0, cfg.GetProperty("encoder_dropout").GetDouble());
            Assert.Equal(64, cfg.GetProperty("token_dim").GetInt32());
            Assert.True(cfg.GetProperty("inference_mode").GetBoolean());
            var saved = Checkpoint.ReadSafetensors(Path.Combine(dir, "adapter_model.safetensors"));
            Assert.Equal(["prompt_embeddings"], saved.Keys.ToList());
            Assert.True(Same(prompt, saved["prompt_embeddings"]), "the file holds the encoder's output (get_prompt_embedding_to_save)");

            using var fresh = LoadLlava();
            var read = PeftAdapters.Load(fresh, dir);
            // The file also records the model's sizes (PromptLearningConfig's token_dim, num_layers, num_attention_heads).
            Assert.Equal(config with { EncoderHiddenSize = type == "LSTM" ? 16 : 64, TokenDim = 64, NumLayers = 2, NumAttentionHeads = 4 }, read.PTuning);
            var tower = PromptTuning.TowersOf(fresh).Single();
            Assert.Null(tower.Reparameterization);   // inference adapter: the stored embeddings directly
            Assert.Equal(["language_model.prompt_encoder.embedding.weight"], fresh.named_parameters().Where(p => p.name.Contains("prompt_encoder")).Select(p => p.name));
            Assert.False(tower.Embedding.weight!.requires_grad);
            using (torch.no_grad())
            {
                var o = fresh.forward(Input(x));
                Assert.True(Same(Masked(logits, o.MergedAttentionMask), Masked(o.Logits, o.MergedAttentionMask)), "reloaded adapter gives bit-identical logits");
            }
            var dir2 = Tmp();
            try
            {
                Assert.Equal("P_TUNING", PeftAdapters.SavePromptLearning(fresh, dir2, null, null));
                Assert.Equal(json.Replace("\"task_type\": null", "\"task_type\": \"CAUSAL_LM\""), File.ReadAllText(Path.Combine(dir2, "adapter_config.json")));
                Assert.True(Same(saved["prompt_embeddings"], Checkpoint.ReadSafetensors(Path.Combine(dir2, "adapter_model.safetensors"))["prompt_embeddings"]));
            }
            finally { Directory.Delete(dir2, true); }
        }
        finally { if (Directory.Exists(dir)) Directory.Delete(dir, true); }
    }

    [Fact]
    public void Adapter_with_a_bad_encoder_field_names_it()
    {
        using var model = LoadLlava();
        var strategy = TuningStrategy.Parse("ptuning-v1", TowerLayout.Llava);
        strategy.Apply(model);
        var dir = Tmp();
        try
        {
            MedPeft.Experiments.VqaJobs.SaveAdapter(model, strategy, dir);
            var path = Path.Combine(dir, "adapter_config.json");
            File.WriteAllText(path, File.ReadAllText(path).Replace("\"MLP\"", "\"GRU\""));
            var e = Assert.Throws<MedPeftException>(() => PeftAdapters.Load(LoadLlava(), dir));
            Assert.Contains("adapter_config.json: field encoder_reparameterization_type", e.Message);
            File.WriteAllText(path, File.ReadAllText(path).Replace("\"GRU\"", "\"MLP\"").Replace("\"num_virtual_tokens\": 20", "\"num_virtual_tokens\": 21"));
            Assert.Contains("prompt_embeddings", Assert.Throws<MedPeftException>(() => PeftAdapters.Load(LoadLlava(), dir)).Message);
        }
        finally { Directory.Delete(dir, true); }
    }

    // ------------------------------------------------------------------ training

    [Theory]
    [InlineData("MLP", "ptuning-v1")]
    [InlineData("LSTM", "ptuning-v1@llm")]
    public void Training_changes_only_adapter_tensors_and_every_encoder_tensor_gets_gradient(string type, string spec)
    {
        torch.manual_seed(22);
        using var model = LoadLlava();
        var x = Fixtures.Load("hf", "llava", "inputs.safetensors");
        var c = new PromptEncoderConfig { NumVirtualTokens = 4, EncoderReparameterizationType = type, EncoderHiddenSize = 16, EncoderDropout = type == "LSTM" ? 0.1 : 0 };
        var report = TuningStrategy.Parse(spec, TowerLayout.Llava, With(c)).Apply(model);
        var trainable = model.named_parameters().Where(p => p.parameter.requires_grad).ToList();
        Assert.Equal(report.TrainableNames.Order(), trainable.Select(p => p.name).Order());
        Assert.Contains(trainable, p => p.name.Contains(type == "LSTM" ? "lstm_head.weight_hh_l1_reverse" : "mlp_head.4.weight"));
        AssertTrainsOnlyAdapters(model, trainable, () => model.forward(Input(x)).Loss!, steps: 2);
    }

    [Fact]
    public void Blip_vqa_prepends_the_encoded_prompt_to_the_question()
    {
        torch.manual_seed(23);
        var model = new BlipForQuestionAnswering(BlipConfig.Load(Fixtures.Path("hf", "blip_vqa", "config.json")));
        Checkpoint.LoadSafetensors(model, Fixtures.Path("hf", "blip_vqa", "model.safetensors"));
        var x = Fixtures.Load("hf", "blip_vqa", "inputs.safetensors");
        var report = TuningStrategy.Parse("ptuning-v1", TowerLayout.Blip).Apply(model);
        Assert.Equal(report.Trainable, report.Towers.Single(t => t.Tower == "text_encoder").Trainable);
        model.train();
        var o = model.forward(new BlipVqaInput(x["pixel_values"], x["input_ids"], x["attention_mask"], Labels: x["labels"]));
        Assert.Equal(x["labels"].shape[1], o.DecoderLogits.shape[1]);
        o.Loss!.backward();
        foreach (var (name, p) in model.named_parameters().Where(p => p.parameter.requires_grad))
            Assert.True(p.grad is not null && p.grad.abs().sum().item<float>() > 0, $"{name}: no gradient");
    }

    // ------------------------------------------------------------------ generation

    [Theory]
    [InlineData("MLP")]
    [InlineData("LSTM")]
    public void Llava_cached_generation_equals_full_recompute(string type) =>
        ExtrinsicMethodsTests.AssertCachedGenerationEqualsRecompute(type, seed: 24, model =>
            TuningStrategy.Parse("ptuning-v1", TowerLayout.Llava, With(new PromptEncoderConfig { NumVirtualTokens = 3, EncoderReparameterizationType = type })).Apply(model));
}
