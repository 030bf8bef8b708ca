using System.Text.Json;
using MedPeft.Models;
using MedPeft.Models.Clip;
using MedPeft.Models.Llama;
using MedPeft.Models.Llava;
using MedPeft.Tuning;
using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;
using static MedPeft.Tests.Tuning.FixtureModels;

namespace MedPeft.Tests.Tuning;

/// <summary>LoRA and LN-tuning against fixtures/hf/llava_lora and llava_ln_tuning (PEFT 0.11.1 on transformers 4.37.2),
/// PEFT adapter-folder I/O, merging, training and parameter counts.</summary>
public class PeftAdapterTests(ITestOutputHelper output)
{
    static double MaxDiff(Tensor a, Tensor b) => (a.detach().to(ScalarType.Float64) - b.detach().to(ScalarType.Float64)).abs().max().item<double>();

    void CheckAdapterFixture(string adapter, int gradCount)
    {
        torch.set_num_threads(2);
        using var model = LoadLlava();
        var x = Fixtures.Load("hf", "llava", "inputs.safetensors");
        var mask = Fixtures.Load("hf", "llava", "expected.safetensors")["merged_attention_mask"];
        var exp = Fixtures.Load("hf", adapter, "expected.safetensors");
        var got = PeftAdapters.LlavaAdapterTensors(model, Fixtures.Path("hf", adapter), x, exp);
        Assert.Equal(gradCount, exp.Keys.Count(k => k.StartsWith("grad.")));
        Assert.Equal(exp.Keys.OrderBy(k => k, StringComparer.Ordinal), got.Keys.OrderBy(k => k, StringComparer.Ordinal));
        foreach (var k in exp.Keys.OrderBy(k => k, StringComparer.Ordinal))
        {
            bool isLogits = k.StartsWith("logits");
            var e = isLogits ? Masked(exp[k], mask) : exp[k];
            var a = isLogits ? Masked(got[k], mask) : got[k];
            Assert.True(e.shape.SequenceEqual(a.shape), $"{k}: shape");
            output.WriteLine($"{k}{(isLogits ? " (mask == 1)" : "")}: max |diff| {MaxDiff(e, a):E3}");
            Fixtures.AssertClose(e, a, k);
        }
        var mu = MaxDiff(Masked(got["logits_merged"], mask), Masked(got["logits_with_adapter"], mask));
        output.WriteLine($"merged vs unmerged logits (mask == 1): {mu:E3}; all positions: {MaxDiff(got["logits_merged"], got["logits_with_adapter"]):E3}");
        // fp32 rounding of W + sBA vs Wx + s·B(Ax): PEFT itself differs by 1.34e-5 on this fixture (meta.json
        // observed_diffs.logits_merged_vs_with_adapter), so the model-level bound is 2e-5 (layer level: 1e-6, below).
        Assert.True(mu <= 2e-5, $"merged vs unmerged logits differ by {mu:E3}");
        // merge_and_unload leaves exactly the base names.
        Assert.Equal(Checkpoint.ReadSafetensors(Fixtures.Path("hf", "llava", "model.safetensors")).Keys.OrderBy(k => k, StringComparer.Ordinal),
            model.state_dict().Keys.OrderBy(k => k, StringComparer.Ordinal));
    }

    [Fact]
    public void Lora_adapter_matches_peft() => CheckAdapterFixture("llava_lora", 16);

    [Fact]
    public void Ln_tuning_adapter_matches_peft() => CheckAdapterFixture("llava_ln_tuning", 15);

    [Fact]
    public void Ia3_adapter_matches_peft() => CheckAdapterFixture("llava_ia3", 10);

    /// <summary>DoRA (LoRA with use_dora): lora_A, lora_B and lora_magnitude_vector for 8 modules; PEFT's merged logits
    /// differ from its unmerged ones by 1.0e-5.</summary>
    [Fact]
    public void Dora_adapter_matches_peft() => CheckAdapterFixture("llava_dora", 24);

    [Fact]
    public void Lora_merge_unmerge_is_reversible_and_equivalent()
    {
        torch.manual_seed(3);
        using var model = LoadLlava();
        var x = Fixtures.Load("hf", "llava", "inputs.safetensors");
        var mask = Fixtures.Load("hf", "llava", "expected.safetensors")["merged_attention_mask"];
        Lora.Apply(model, new LoraConfig { R = 4, LoraAlpha = 16, LoraDropout = 0, TargetModules = ["q_proj", "v_proj", "o_proj", "fc1", "linear_1"] });
        var layers = Lora.LayersOf(model);
        Assert.Equal(2 * 3 + 2 * 3 + 1, layers.Count);   // Llama q/v/o ×2, CLIP q/v/fc1 ×2 (suffix o_proj ≠ out_proj), projector
        using (torch.no_grad()) foreach (var l in layers) l.B.weight!.normal_(0, 0.1);
        var w0 = layers.ToDictionary(l => l.Name, l => l.Base.weight!.detach().clone());
        using var _ = torch.no_grad();
        var unmerged = model.forward(Input(x)).Logits;
        Lora.Merge(model);
        var merged = model.forward(Input(x)).Logits;
        var d = MaxDiff(Masked(merged, mask), Masked(unmerged, mask));
        output.WriteLine($"merged vs unmerged: {d:E3}");
        Assert.True(d <= 2e-5, $"merged vs unmerged {d:E3}");   // |logits| ≈ 12; PEFT: 1.34e-5 (see above)
        foreach (var l in layers)
        {
            // Layer level: the merged layer equals the unmerged one (base + LoRA) within fp32 noise.
            var inp = torch.randn(3, l.Base.weight!.shape[1]);
            var mergedOut = l.call(inp);
            Lora.Unmerge(model);
            var hookOut = l.call(inp);
            Lora.Merge(model);
            var dl = MaxDiff(mergedOut, hookOut);
            // fp32 noise scales with the output: 1e-6 relative is ~8 ulps (o_proj outputs reach ≈10: 1 ulp = 9.5e-7).
            var scale = Math.Max(1.0, hookOut.abs().max().item<float>());
            Assert.True(dl <= 1e-6 * scale, $"{l.Name}: merged vs unmerged layer output {dl:E3} (|output| ≤ {scale:G3})");
        }
        Lora.Unmerge(model);
        foreach (var l in layers)
        {
            var dw = MaxDiff(w0[l.Name], l.Base.weight!);
            Assert.True(dw <= 1e-6, $"{l.Name}: unmerge left {dw:E3}");
        }
        var again = model.forward(Input(x)).Logits;
        Assert.True(MaxDiff(again, unmerged) <= 1e-5);
        // Merged export: base names only, W + sBA.
        var export = Lora.MergedStateDict(model).ToDictionary(t => t.Name, t => t.Tensor);
        Assert.DoesNotContain(export.Keys, k => k.Contains("lora_"));
        var q = layers.First(l => l.Name.EndsWith("q_proj"));
        Assert.True(MaxDiff(export[q.Name + ".weight"], q.Base.weight! + q.DeltaWeight()) == 0);
    }

    [Fact]
    public void Lora_save_load_round_trips_in_peft_layout()
    {
        using var model = LoadLlava();
        var config = PeftAdapters.Load(model, Fixtures.Path("hf", "llava_lora"));
        var dir = Path.Combine(Path.GetTempPath(), "medpeft-lora-" + Guid.NewGuid().ToString("N"));
        try
        {
            PeftAdapters.SaveLora(model, dir, config.Lora!, config.TaskType);
            var fixtureKeys = Checkpoint.ReadSafetensors(Fixtures.Path("hf", "llava_lora", "adapter_model.safetensors"));
            var saved = Checkpoint.ReadSafetensors(Path.Combine(dir, "adapter_model.safetensors"));
            Assert.Equal(fixtureKeys.Keys.OrderBy(k => k, StringComparer.Ordinal), saved.Keys.OrderBy(k => k, StringComparer.Ordinal));
            foreach (var (k, t) in fixtureKeys) Assert.True(Same(t, saved[k]), $"{k} not bit-identical");
            var fixtureJson = File.ReadAllText(Fixtures.Path("hf", "llava_lora", "adapter_config.json"));
            var savedJson = File.ReadAllText(Path.Combine(dir, "adapter_config.json"));
            Assert.Equal(Fields(fixtureJson), Fields(savedJson));
            Assert.Equal(fixtureJson.TrimEnd(), savedJson.TrimEnd());   // same text as PEFT wrote

            using var fresh = LoadLlava();
            PeftAdapters.Load(fresh, dir);
            var a = Lora.AdapterTensors(model);
            var b = Lora.AdapterTensors(fresh);
            Assert.Equal(a.Keys.OrderBy(k => k), b.Keys.OrderBy(k => k));
            foreach (var (k, t) in a) Assert.True(Same(t, b[k]), $"{k} differs after reload");
            Assert.All(b.Values, t => Assert.False(t.requires_grad));   // loaded for inference unless trainable
        }
        finally { if (Directory.Exists(dir)) Directory.Delete(dir, true); }
    }

    [Fact]
    public void Ln_tuning_save_load_round_trips_in_peft_layout()
    {
        using var model = LoadLlava();
        var config = PeftAdapters.Load(model, Fixtures.Path("hf", "llava_ln_tuning"));
        var dir = Path.Combine(Path.GetTempPath(), "medpeft-ln-" + Guid.NewGuid().ToString("N"));
        try
        {
            PeftAdapters.SaveLnTuning(model, dir, config.LnTargets!, config.TaskType);
            var fixture = Checkpoint.ReadSafetensors(Fixtures.Path("hf", "llava_ln_tuning", "adapter_model.safetensors"));
            var saved = Checkpoint.ReadSafetensors(Path.Combine(dir, "adapter_model.safetensors"));
            Assert.Equal(fixture.Keys.OrderBy(k => k, StringComparer.Ordinal), saved.Keys.OrderBy(k => k, StringComparer.Ordinal));
            foreach (var (k, t) in fixture) Assert.True(Same(t, saved[k]), $"{k} not bit-identical");
            var fixtureJson = File.ReadAllText(Fixtures.Path("hf", "llava_ln_tuning", "adapter_config.json"));
            var savedJson = File.ReadAllText(Path.Combine(dir, "adapter_config.json"));
            Assert.Equal(Fields(fixtureJson), Fields(savedJson));
            Assert.Equal(fixtureJson.TrimEnd(), savedJson.TrimEnd());
            // The CLIP post_layernorm is not a target and keeps the base values.
            using var fresh = LoadLlava();
            var post0 = fresh.vision_tower.vision_model.post_layernorm.weight!.detach().clone();
            PeftAdapters.Load(fresh, dir);
            Assert.True(Same(post0, fresh.vision_tower.vision_model.post_layernorm.weight!));
            Assert.True(Same(fresh.language_model.model.norm.weight, fixture["base_model.model.language_model.model.norm.ln_tuning_layers.weight"]));
        }
        finally { if (Directory.Exists(dir)) Directory.Delete(dir, true); }
    }

    static List<string> Fields(string json) =>
        JsonDocument.Parse(json).RootElement.EnumerateObject().Select(p => p.Name).OrderBy(n => n, StringComparer.Ordinal).ToList();

    [Fact]
    public void Adapter_that_does_not_fit_names_the_keys()
    {
        var dir = Path.Combine(Path.GetTempPath(), "medpeft-bad-" + Guid.NewGuid().ToString("N"));
        try
        {
            Directory.CreateDirectory(dir);
            File.Copy(Fixtures.Path("hf", "llava_lora", "adapter_config.json"), Path.Combine(dir, "adapter_config.json"));
            var t = Checkpoint.ReadSafetensors(Fixtures.Path("hf", "llava_lora", "adapter_model.safetensors"));
            const string gone = "base_model.model.language_model.model.layers.1.self_attn.v_proj.lora_B.weight";
            t.Remove(gone);
            t["base_model.model.extra.lora_A.weight"] = torch.zeros(4, 4);
            t["base_model.model.language_model.model.layers.0.self_attn.q_proj.lora_A.weight"] = torch.zeros(4, 63);
            Checkpoint.SaveSafetensors(t.Select(kv => (kv.Key, kv.Value)), Path.Combine(dir, "adapter_model.safetensors"));
            using var model = LoadLlava();
            var e = Assert.Throws<MedPeftException>(() => PeftAdapters.Load(model, dir));
            output.WriteLine(e.Message);
            Assert.DoesNotContain("\n", e.Message);
            Assert.Contains("1 missing", e.Message);
            Assert.Contains(gone, e.Message);
            Assert.Contains("base_model.model.extra.lora_A.weight", e.Message);
            Assert.Contains("shape-mismatched", e.Message);
        }
        finally { if (Directory.Exists(dir)) Directory.Delete(dir, true); }
    }

    [Fact]
    public void Target_matching_follows_peft()
    {
        var list = new LoraConfig { TargetModules = ["q_proj"] };
        Assert.True(list.Targets("language_model.model.layers.0.self_attn.q_proj"));
        Assert.True(list.Targets("q_proj"));
        Assert.False(list.Targets("language_model.model.layers.0.self_attn.xq_proj"));
        var regex = new LoraConfig { TargetRegex = @"language_model\..*\.(q_proj|v_proj)" };
        Assert.True(regex.Targets("language_model.model.layers.0.self_attn.v_proj"));
        Assert.False(regex.Targets("vision_tower.vision_model.encoder.layers.0.self_attn.v_proj"));
        Assert.False(regex.Targets("language_model.model.layers.0.self_attn.v_proj.x"));   // full match
        Assert.Equal(4.0, new LoraConfig { R = 4, LoraAlpha = 8, UseRslora = true }.Scaling);
        Assert.Equal(2.0, new LoraConfig { R = 4, LoraAlpha = 8 }.Scaling);
        using var model = LoadLlava();
        var e = Assert.Throws<MedPeftException>(() => Lora.Apply(model, new LoraConfig { TargetModules = ["nope"] }));
        Assert.Contains("not found", e.Message);
        var e2 = Assert.Throws<MedPeftException>(() => Lora.Apply(model, new LoraConfig { TargetModules = ["layer_norm1"] }));
        Assert.Contains("nn.Linear", e2.Message);
    }

    [Fact]
    public void Training_changes_only_adapter_tensors_and_gradient_reaches_every_used_factor()
    {
        torch.manual_seed(5);
        torch.set_num_threads(2);
        using var model = LoadLlava();
        var x = Fixtures.Load("hf", "llava", "inputs.safetensors");
        var strategy = TuningStrategy.Parse("lora@llm,vision", TowerLayout.Llava);
        var report = strategy.Apply(model);
        var layers = Lora.LayersOf(model);
        Assert.Equal(8, layers.Count);
        Assert.All(report.TrainableNames, n => Assert.Matches(@"\.lora_[AB]\.weight$", n));
        Assert.Equal(8 * 2, report.TrainableNames.Count);
        Assert.All(layers, l => Assert.Equal(0.1, l.Dropout));
        Assert.All(layers, l => Assert.Equal(32.0 / 8, l.Scaling));
        Assert.All(layers, l => Assert.Equal(ScalarType.Float32, l.A.weight!.dtype));
        Assert.All(layers, l => Assert.True(l.B.weight!.eq(0).all().item<bool>()));   // B starts at zero: output unchanged

        var baseBefore = model.named_parameters().Where(p => !p.name.Contains(".lora_")).ToDictionary(p => p.name, p => p.parameter.detach().clone());
        var adapterBefore = Lora.AdapterTensors(model).ToDictionary(kv => kv.Key, kv => kv.Value.detach().clone());
        var trainable = model.parameters().Where(p => p.requires_grad).ToList();
        var opt = torch.optim.AdamW(trainable, lr: 1e-2);
        model.train();
        var losses = new List<double>();
        for (int step = 0; step < 3; step++)
        {
            opt.zero_grad();
            var loss = model.forward(Input(x)).Loss!;
            loss.backward();
            losses.Add(loss.item<float>());
            if (step == 1)
            {
                // After one step B ≠ 0, so every factor the loss depends on gets a gradient; the last CLIP layer is unused
                // (vision_feature_layer −2).
                foreach (var l in layers)
                {
                    bool unused = l.Name.StartsWith("vision_tower.vision_model.encoder.layers.1.");
                    foreach (var (w, which) in new[] { (l.A.weight!, "A"), (l.B.weight!, "B") })
                    {
                        var g = w.grad;
                        double norm = g is null ? 0 : g.abs().sum().item<float>();
                        if (unused) Assert.True(norm == 0, $"{l.Name}.lora_{which}: unexpected gradient");
                        else Assert.True(norm > 0, $"{l.Name}.lora_{which}: no gradient");
                    }
                }
            }
            opt.step();
        }
        output.WriteLine("losses: " + string.Join(", ", losses.Select(v => v.ToString("F5"))));
        foreach (var (name, p) in model.named_parameters())
        {
            if (name.Contains(".lora_")) continue;
            Assert.True(Same(p, baseBefore[name]), $"base parameter {name} changed");
        }
        var after = Lora.AdapterTensors(model);
        foreach (var (k, t) in after)
        {
            bool unused = k.Contains("vision_tower.vision_model.encoder.layers.1.");
            if (!unused) Assert.False(Same(t, adapterBefore[k]), $"{k} did not train");
        }
    }

    sealed class Holder : nn.Module<Tensor, Tensor>
    {
        public nn.Module<Tensor, Tensor> proj;   // a field LoRA can replace with its wrapper (as PEFT setattr's it)
        public Holder(ScalarType dtype) : base("Holder") { proj = nn.Linear(6, 5, dtype: dtype); RegisterComponents(); }
        public override Tensor forward(Tensor x) => proj.call(x);
    }

    [Fact]
    public void Lora_factors_are_fp32_on_a_bf16_base()
    {
        torch.manual_seed(9);
        using var m = new Holder(ScalarType.BFloat16);
        var w0 = ((TorchSharp.Modules.Linear)m.proj).weight!.detach().clone();
        var l = Lora.Apply(m, new LoraConfig { R = 2, LoraAlpha = 4, LoraDropout = 0, TargetModules = ["proj"] }).Single();
        Assert.Equal(ScalarType.Float32, l.A.weight!.dtype);
        Assert.Equal(ScalarType.Float32, l.B.weight!.dtype);
        Assert.Equal(["proj.lora_A.weight", "proj.lora_B.weight"], m.state_dict().Keys.Where(k => k.Contains("lora")).OrderBy(k => k));
        using (torch.no_grad()) l.B.weight!.normal_();
        var x = torch.randn(3, 6).to(ScalarType.BFloat16);
        var y = m.forward(x);
        Assert.Equal(ScalarType.BFloat16, y.dtype);
        var reference = (nn.functional.linear(x.to(ScalarType.Float32), w0.to(ScalarType.Float32), l.Base.bias!.to(ScalarType.Float32))
                         + 2 * torch.matmul(torch.matmul(x.to(ScalarType.Float32), l.A.weight!.t()), l.B.weight!.t())).to(ScalarType.BFloat16);
        Assert.True(MaxDiff(y, reference) <= 0.05);
        Assert.True(Same(w0, l.Base.weight!));
    }

    [Fact]
    public void Lora_at_llm_on_llava_med_7b_meta_trains_4_194_304()
    {
        var config = Presets.LlavaMed7b();   // LLaMA-7B (vocab 32004) + CLIP ViT-L/14 @ 224 + linear projector
        using var model = ModelUtils.OnMeta(() => new LlavaForConditionalGeneration(config));
        var report = TuningStrategy.Parse("lora@llm", TowerLayout.Llava).Apply(model);
        Assert.Equal(4_194_304L, report.Trainable);
        Assert.Equal(7_045_826_560L + 4_194_304L, report.Total);
        Assert.Equal(4_194_304L, report.Towers.Single(t => t.Tower == "llm").Trainable);
        Assert.Equal(0L, report.Towers.Single(t => t.Tower == "vision").Trainable);
        Assert.All(Lora.LayersOf(model), l => Assert.Equal(DeviceType.META, l.A.weight!.device_type));
        Assert.Equal(64, Lora.LayersOf(model).Count);
    }
}
