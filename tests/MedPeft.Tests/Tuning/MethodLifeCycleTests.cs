using MedPeft.Models;
using MedPeft.Models.Llava;
using MedPeft.Tuning;
using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;
using static MedPeft.Tests.Tuning.FixtureModels;

namespace MedPeft.Tests.Tuning;

/// <summary>The life cycle of every registered method on the tiny LLaVA fixture: apply → (perturb what trains) →
/// save adapter → load it onto a fresh model (same logits) → write its config again (same text) → Finalize: merge into
/// the weights (same logits, exactly the base parameter names) or, for prompt learning, a clear refusal. A method added
/// to the registry joins these tests automatically.</summary>
public class MethodLifeCycleTests(ITestOutputHelper output)
{
    public static IEnumerable<object[]> Methods() => TuningMethods.All.Keys.Select(k => new object[] { k });

    static double MaxDiff(Tensor a, Tensor b) => (a.detach().to(ScalarType.Float64) - b.detach().to(ScalarType.Float64)).abs().max().item<double>();

    static string TempDir() => Path.Combine(Path.GetTempPath(), "medpeft-life-" + Guid.NewGuid().ToString("N"));

    [Theory]
    [MemberData(nameof(Methods))]
    public void Every_method_saves_loads_and_finalizes(string name)
    {
        torch.manual_seed(11);
        var x = Fixtures.Load("hf", "llava", "inputs.safetensors");
        var mask = Fixtures.Load("hf", "llava", "expected.safetensors")["merged_attention_mask"];
        var baseKeys = Checkpoint.ReadSafetensors(Fixtures.Path("hf", "llava", "model.safetensors")).Keys.Order(StringComparer.Ordinal).ToList();
        using var model = LoadLlava();
        var strategy = TuningStrategy.Parse(name, TowerLayout.Llava);
        var method = strategy.Terms.Single().Method;
        var report = strategy.Apply(model);
        Assert.True(report.Trainable > 0, $"{name} trains nothing");
        using (torch.no_grad())   // a trained-looking adapter (LoRA's B and IA3's ones would be the identity)
            foreach (var p in model.parameters().Where(p => p.requires_grad)) p.add_(0.05 * torch.randn_like(p));
        Tensor live;
        using (torch.no_grad()) live = Masked(model.forward(Input(x)).Logits, mask).clone();

        var dir = TempDir();
        try
        {
            var type = strategy.SaveAdapter(model, dir, "CAUSAL_LM");
            Assert.Equal(method.PeftType, type);
            if (type is not null)
            {
                // Load dispatches on the file's peft_type through the registry: the same outputs on a fresh base model.
                using var fresh = LoadLlava();
                var (loaded, config) = TuningMethods.LoadAdapter(fresh, dir, trainable: true);
                Assert.Equal(type, config.PeftType);
                Assert.Equal(method.PeftType, loaded.PeftType);
                using (torch.no_grad())
                {
                    var d = MaxDiff(live, Masked(fresh.forward(Input(x)).Logits, mask));
                    output.WriteLine($"{name}: reloaded vs live {d:E3}");
                    Assert.True(d <= 1e-5, $"{name}: reloaded adapter gives other logits ({d:E3})");
                }
                // Writing the loaded adapter again gives the same config text (write → read → write).
                var again = TempDir();
                try
                {
                    loaded.SaveAdapter(fresh, TowerLayout.Llava, TowerLayout.Llava.Towers.Keys.ToList(), again, "CAUSAL_LM");
                    Assert.Equal(File.ReadAllText(Path.Combine(dir, PeftAdapters.ConfigFile)), File.ReadAllText(Path.Combine(again, PeftAdapters.ConfigFile)));
                }
                finally { if (Directory.Exists(again)) Directory.Delete(again, true); }
            }
            else Assert.False(Directory.Exists(dir), "no adapter form: nothing written");
        }
        finally { if (Directory.Exists(dir)) Directory.Delete(dir, true); }

        if (method.CanMerge)
        {
            strategy.Finalize(model, FinalizeMode.Merge);
            Assert.Equal(baseKeys, model.state_dict().Keys.Order(StringComparer.Ordinal).ToList());   // loads strictly into a plain model
            using var _ = torch.no_grad();
            var d = MaxDiff(live, Masked(model.forward(Input(x)).Logits, mask));
            output.WriteLine($"{name}: merged vs live {d:E3}");
            Assert.True(d <= 2e-5, $"{name}: merged logits differ by {d:E3}");
        }
        else
        {
            var e = Assert.Throws<MedPeftException>(() => strategy.Finalize(model, FinalizeMode.Merge));
            Assert.Contains("has no merged form", e.Message);
            strategy.Finalize(model, FinalizeMode.KeepAdapter);   // stays usable with the adapter
            using (torch.no_grad()) Assert.True(MaxDiff(live, Masked(model.forward(Input(x)).Logits, mask)) == 0);
            strategy.Finalize(model, FinalizeMode.MergeOrRemove);   // model/ = the base, the prompt lives in adapter/
            Assert.Equal(baseKeys, model.state_dict().Keys.Order(StringComparer.Ordinal).ToList());
        }
    }

    /// <summary>The generic config record + System.Text.Json round trip reproduces what PEFT 0.11.1 wrote, byte for byte
    /// (field names, values, Python's float and list formatting, sorted keys).</summary>
    [Theory]
    [InlineData("llava_lora", typeof(LoraConfig))]
    [InlineData("llava_dora", typeof(LoraConfig))]
    [InlineData("llava_ia3", typeof(Ia3Config))]
    [InlineData("llava_ln_tuning", typeof(LnTuningConfig))]
    public void Peft_written_configs_read_and_write_back_to_the_same_text(string adapter, Type type)
    {
        var config = PeftAdapters.ReadConfig(Fixtures.Path("hf", adapter)).Config;
        Assert.IsType(type, config);
        Assert.Equal(File.ReadAllText(Fixtures.Path("hf", adapter, "adapter_config.json")).TrimEnd(), PeftConfigJson.Write(config));
    }

    /// <summary>Every registered method's config record: defaults written, read back, written again — the same text;
    /// a file without the fields PEFT defaults differently reads as PEFT's defaults.</summary>
    [Theory]
    [MemberData(nameof(Methods))]
    public void Every_config_record_round_trips(string name)
    {
        var method = TuningMethods.All[name];
        if (method.ConfigType is not { } type) { Assert.Null(method.PeftType); return; }
        var config = (PeftConfig)Activator.CreateInstance(type)!;
        if (config is LnTuningConfig ln) config = ln with { TargetModules = ["norm"] };
        var text = PeftConfigJson.Write(config);
        var json = (System.Text.Json.Nodes.JsonObject)System.Text.Json.Nodes.JsonNode.Parse(text)!;
        Assert.Equal(method.PeftType, json["peft_type"]!.GetValue<string>());
        Assert.Equal(text, PeftConfigJson.Write(PeftConfigJson.Read(json, type, "(test)")));
        if (config is LoraConfig)
        {
            json.Remove("lora_alpha");
            json.Remove("lora_dropout");
            var peft = (LoraConfig)PeftConfigJson.Read(json, type, "(test)");
            Assert.Equal((8.0, 0.0), (peft.LoraAlpha, peft.LoraDropout));   // PEFT's LoraConfig defaults, not MILE's 32 / 0.1
        }
    }

    [Fact]
    public void Config_fields_medpeft_cannot_honour_are_refused_in_one_line()
    {
        var json = (System.Text.Json.Nodes.JsonObject)System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Fixtures.Path("hf", "llava_dora", "adapter_config.json")))!;
        string Error(string field, System.Text.Json.Nodes.JsonNode? value)
        {
            var j = (System.Text.Json.Nodes.JsonObject)json.DeepClone();
            j[field] = value;
            return Assert.Throws<MedPeftException>(() => PeftConfigJson.Read(j, typeof(LoraConfig), "a/adapter_config.json")).Message;
        }
        Assert.Equal("a/adapter_config.json: field \"rank_pattern\" (per-module ranks) is not supported by MedPeft", Error("rank_pattern", new System.Text.Json.Nodes.JsonObject { ["q_proj"] = 2 }));
        Assert.Equal("a/adapter_config.json: field \"fan_in_fan_out\" true (Conv1D layers) is not supported by MedPeft", Error("fan_in_fan_out", true));
        Assert.Equal("a/adapter_config.json: field \"target_modules\" is missing", Error("target_modules", null));
        Assert.StartsWith("a/adapter_config.json: field \"r\" has the wrong type", Error("r", "eight"));
        Assert.StartsWith("a/adapter_config.json: field \"target_modules\" has the wrong type", Error("target_modules", 3));
    }

    [Fact]
    public void Mixed_strategy_with_a_prompt_method_refuses_to_drop_it()
    {
        using var model = LoadLlava();
        var strategy = TuningStrategy.Parse("lora+prompt", TowerLayout.Llava);
        strategy.Apply(model);
        Assert.Null(strategy.SaveAdapter(model, TempDir()));
        var e = Assert.Throws<MedPeftException>(() => strategy.Finalize(model, FinalizeMode.MergeOrRemove));
        Assert.Contains("prompt has no merged form", e.Message);
    }

    // ------------------------------------------------------------------ wrapped layers (PEFT's lora.Linear / ia3.Linear)

    [Theory]
    [InlineData("lora")]
    [InlineData("dora")]
    [InlineData("ia3")]
    public void Wrapped_layer_merge_unmerge_round_trips(string name)
    {
        torch.manual_seed(12);
        using var model = LoadLlava();
        var w0 = model.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.detach().clone());
        TuningStrategy.Parse(name, TowerLayout.Llava).Apply(model);
        var layers = AdaptedLinear.In<AdaptedLinear>(model);
        Assert.NotEmpty(layers);
        // PEFT's live names: the wrapped Linear is base_layer.
        Assert.All(layers, l => Assert.Contains(l.Name + ".base_layer.weight", model.state_dict().Keys));
        using var _ = torch.no_grad();
        foreach (var p in model.parameters().Where(p => p.requires_grad)) p.add_(0.05 * torch.randn_like(p));
        foreach (var l in layers)
        {
            var inp = torch.randn(3, l.Base.weight!.shape[1]);
            var unmerged = l.call(inp).clone();
            l.Merge();
            Assert.True(l.Merged);
            var merged = l.call(inp);
            var scale = Math.Max(1.0, unmerged.abs().max().item<float>());
            Assert.True(MaxDiff(merged, unmerged) <= 2e-6 * scale, $"{l.Name}: merged vs unmerged {MaxDiff(merged, unmerged):E3}");
            Assert.True(MaxDiff(merged, nn.functional.linear(inp, l.Base.weight!, l.Base.bias)) == 0, "merged = the base layer alone");
            l.Unmerge();
            Assert.True(MaxDiff(w0[l.Name + ".weight"], l.Base.weight!) <= 1e-6, $"{l.Name}: unmerge left {MaxDiff(w0[l.Name + ".weight"], l.Base.weight!):E3}");
            Assert.True(MaxDiff(unmerged, l.call(inp)) <= 1e-6 * scale);
        }
    }

    [Fact]
    public void Dora_magnitude_starts_at_the_row_norms_and_is_saved_with_peft_keys()
    {
        using var model = LoadLlava();
        var strategy = TuningStrategy.Parse("dora@llm", TowerLayout.Llava);
        var report = strategy.Apply(model);
        var layers = Lora.LayersOf(model).Cast<DoraLinear>().ToList();
        Assert.Equal(4, layers.Count);   // q_proj, v_proj × 2 layers
        foreach (var l in layers)
            Assert.True(MaxDiff(l.lora_magnitude_vector, torch.linalg.norm(l.Base.weight!, dims: [1])) <= 1e-6);
        // LoRA's factors plus one magnitude per output row: 2 layers × (q 64 + v 64).
        Assert.Equal(4 * (8 * 64 + 64 * 8) + 4 * 64, report.Trainable);
        var dir = TempDir();
        try
        {
            Assert.Equal("LORA", strategy.SaveAdapter(model, dir));
            var keys = Checkpoint.ReadSafetensors(Path.Combine(dir, PeftAdapters.WeightsFile)).Keys.ToList();
            Assert.Contains(PeftAdapters.Prefix + "language_model.model.layers.0.self_attn.q_proj.lora_magnitude_vector", keys);
            Assert.Equal(12, keys.Count);
            var config = PeftAdapters.ReadConfig(dir);
            Assert.True(config.Lora!.UseDora);
            Assert.IsType<DoraMethod>(TuningMethods.ForAdapter(config, dir));
        }
        finally { if (Directory.Exists(dir)) Directory.Delete(dir, true); }
    }

    [Fact]
    public void Dora_at_llm_on_llava_med_7b_meta_trains_4_456_448()
    {
        using var model = ModelUtils.OnMeta(() => new LlavaForConditionalGeneration(Presets.LlavaMed7b()));
        var report = TuningStrategy.Parse("dora@llm", TowerLayout.Llava).Apply(model);
        Assert.Equal(4_194_304L + 2 * 4096 * 32, report.Trainable);   // LoRA's count + one magnitude per output row of q_proj, v_proj
        Assert.Equal(4_456_448L, report.Trainable);
    }
}
