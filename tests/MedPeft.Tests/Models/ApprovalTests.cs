using System.Runtime.CompilerServices;
using MedPeft.Models;
using MedPeft.Models.Llava;
using MedPeft.Tuning;
using TorchSharp;
using static TorchSharp.torch;

namespace MedPeft.Tests.Models;

/// <summary>Every unique parameter (<c>name [shape] dtype</c>) of each named preset, built on the meta device, against
/// the checked-in approved/NAME.params.txt. On a mismatch the received list is written next to the approved file as
/// NAME.params.received.txt (rename it over the approved file to accept a deliberate change).</summary>
public class ApprovalTests
{
    static string ApprovedDir([CallerFilePath] string here = "") =>
        Path.GetFullPath(Path.Combine(Path.GetDirectoryName(here)!, "..", "approved"));

    public static List<string> ParameterLines(nn.Module model) =>
        ModelUtils.UniqueParameters(model).Select(p => $"{p.Name} [{string.Join(", ", p.Param.shape)}] {p.Param.dtype}").ToList();

    [Theory]
    [InlineData("miss-base")]
    [InlineData("blip-vqa-base")]
    [InlineData("llava-med-7b")]
    public void Preset_parameters_match_the_approved_list(string preset)
    {
        using var model = Presets.Get(preset).BuildOnMeta();
        var received = ParameterLines(model);
        // The copy in the test output when the project copies approved/ there, else the source tree's; a received
        // file goes next to the source-tree copy (where it can be reviewed and renamed), or next to the output copy.
        var approvedFile = Path.Combine(AppContext.BaseDirectory, "approved", $"{preset}.params.txt");
        if (!File.Exists(approvedFile)) approvedFile = Path.Combine(ApprovedDir(), $"{preset}.params.txt");
        var sourceDir = Directory.Exists(ApprovedDir()) ? ApprovedDir() : Path.GetDirectoryName(approvedFile)!;
        var receivedFile = Path.Combine(sourceDir, $"{preset}.params.received.txt");
        var approved = File.Exists(approvedFile) ? File.ReadAllLines(approvedFile).Where(l => l.Length > 0).ToList() : null;
        string? difference = approved is null ? $"{approvedFile} does not exist" : null;
        for (int i = 0; difference is null && i < Math.Max(approved!.Count, received.Count); i++)
        {
            var a = i < approved.Count ? approved[i] : "(end of file)";
            var r = i < received.Count ? received[i] : "(end of list)";
            if (a != r) difference = $"line {i + 1}: approved \"{a}\", received \"{r}\"";
        }
        if (difference is null) { if (File.Exists(receivedFile)) File.Delete(receivedFile); return; }
        File.WriteAllLines(receivedFile, received);
        Assert.Fail($"{preset}: parameter list differs from the approved one ({difference}); received list written to {receivedFile}");
    }

    static TrainableReport Report(ModelSpec spec, nn.Module m, string strategy) => TuningStrategy.Parse(strategy, spec.Layout).Apply(m);

    [Fact]
    public void Llava_med_7b_counts()
    {
        var spec = Presets.Get("llava-med-7b");
        using var m = spec.BuildOnMeta();
        var ln = Report(spec, m, "ln");
        Assert.Equal(7_045_826_560, ln.Total);
        Assert.Equal(368_640, ln.Trainable);
        Assert.Equal(266_240, Report(spec, m, "ln@llm").Trainable);
        // CLIP's LayerNorms (pre, 24×2, post). With vision_feature_layer −2 the last block and post_layernorm get no
        // gradient, but they are parameters and count.
        Assert.Equal(102_400, Report(spec, m, "ln@vision").Trainable);
        Assert.Equal(4_198_400, Report(spec, m, "full@projector").Trainable);
        Assert.Equal(303_179_776, Report(spec, m, "full@vision").Trainable);
        Assert.Equal(6_738_448_384, Report(spec, m, "full@llm").Trainable);
        var c = (LlavaConfig)spec.Config;
        Assert.Equal("linear", c.ProjectorType);
        Assert.Equal(-2, c.VisionFeatureLayer);
        Assert.Equal(224, c.VisionConfig.ImageSize);
        Assert.Same(TowerLayout.Llava, spec.Layout);
    }

    [Fact]
    public void Llava_med_v15_mistral_counts()
    {
        var spec = Presets.Get("llava-med-v1.5-7b");
        using var m = spec.BuildOnMeta();
        // [C] Mistral-7B 7,241,732,096 + CLIP ViT-L/14-336 303,507,456 + MLP projector 20,979,712.
        Assert.Equal(7_566_219_264, Report(spec, m, "full").Total);
        Assert.Equal(7_241_732_096, Report(spec, m, "full@llm").Trainable);
        Assert.Equal(20_979_712, Report(spec, m, "full@projector").Trainable);
        Assert.Equal(32 * 2 * 4096 + 4096, Report(spec, m, "ln@llm").Trainable);
        var text = ((LlavaConfig)spec.Config).TextConfig;
        Assert.True(text.IsMistral);
        Assert.Null(text.EffectiveSlidingWindow);
    }

    [Fact]
    public void Blip_presets_come_from_BlipPresets()
    {
        var miss = Presets.Get("miss-base");
        using var m = miss.BuildOnMeta();
        Assert.Equal(361_478_972, Report(miss, m, "full").Total);
        Assert.Same(TowerLayout.Blip, miss.Layout);
        var (model, layout) = Presets.Build("blip-vqa-base");
        using (model) Assert.Equal(384_672_572, TuningStrategy.Parse("full", layout).Apply(model).Total);
        Assert.Equal(["miss-base", "blip-vqa-base", "llava-med-7b", "llava-med-v1.5-7b"], Presets.Names);
        var e = Assert.Throws<MedPeftException>(() => Presets.Get("llava-13b"));
        Assert.Contains("not a preset", e.Message);
    }

    [Fact]
    public void FromFolder_detects_the_family_of_fixture_folders()
    {
        var blip = Presets.FromFolder(Fixtures.Path("hf", "blip_vqa"));
        Assert.Equal(ModelFamily.Blip, blip.Family);
        Assert.Equal(CheckpointLayout.HfBlip, blip.KeyLayout);
        var llava = Presets.FromFolder(Fixtures.Path("hf", "llava"));
        Assert.Equal(ModelFamily.Llava, llava.Family);
        Assert.Same(TowerLayout.Llava, llava.Layout);
        var (model, _) = Presets.LoadFolder(Fixtures.Path("hf", "llava"), torch.CPU);
        using (model)
        using (var reference = OriginalLayouts.FixtureLlava())
            OriginalLayouts.AssertSame(OriginalLayouts.LlavaLogits(reference), OriginalLayouts.LlavaLogits((LlavaForConditionalGeneration)model), "LoadFolder");
    }

    [Fact]
    public void FromFolder_loads_an_original_layout_blip_folder()
    {
        var dir = OriginalLayouts.TempDir();
        try
        {
            File.Copy(Fixtures.Path("hf", "blip_vqa", "config.json"), Path.Combine(dir, "config.json"));
            var orig = OriginalLayouts.Renamed("blip_vqa", OriginalLayouts.BlipHfToOriginal);
            OriginalLayouts.Pickle(Path.Combine(dir, "model_base_vqa.pth"), new System.Collections.Hashtable { ["model"] = orig });
            var (model, spec) = Presets.LoadFolder(dir, torch.CPU);
            using (model)
            using (var reference = OriginalLayouts.FixtureBlip())
                OriginalLayouts.AssertSame(OriginalLayouts.BlipLogits(reference), OriginalLayouts.BlipLogits((MedPeft.Models.Blip.BlipForQuestionAnswering)model), "original BLIP folder");
            Assert.Equal(ModelFamily.Blip, spec.Family);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void FromFolder_translates_original_llava_med_configs()
    {
        var dir = OriginalLayouts.TempDir();
        try
        {
            // The shape of LLaVA-Med v1's config.json (LLaVA v0 code): LLaMA fields at top level plus mm_* fields.
            File.WriteAllText(Path.Combine(dir, "config.json"), """
                {"architectures": ["LlavaLlamaForCausalLM"], "model_type": "llava", "hidden_size": 4096, "intermediate_size": 11008,
                 "num_attention_heads": 32, "num_hidden_layers": 32, "rms_norm_eps": 1e-06, "vocab_size": 32004, "max_position_embeddings": 2048,
                 "hidden_act": "silu", "bos_token_id": 0, "eos_token_id": 1, "pad_token_id": -1, "torch_dtype": "float16", "use_cache": true,
                 "mm_vision_tower": "openai/clip-vit-large-patch14", "mm_hidden_size": 1024, "mm_use_im_start_end": true, "mm_vision_select_layer": -2}
                """);
            var v1 = Presets.FromFolder(dir);
            var c = (LlavaConfig)v1.Config;
            Assert.Equal("linear", c.ProjectorType);
            Assert.Equal(224, c.VisionConfig.ImageSize);
            Assert.Equal(32004, c.TextConfig.VocabSize);
            using (var m = v1.BuildOnMeta())
                Assert.Equal(7_045_826_560, TuningStrategy.Parse("full", v1.Layout).Apply(m).Total);

            // LLaVA-Med v1.5 (LlavaMistralForCausalLM).
            File.WriteAllText(Path.Combine(dir, "config.json"), """
                {"architectures": ["LlavaMistralForCausalLM"], "model_type": "llava_mistral", "hidden_size": 4096, "intermediate_size": 14336,
                 "num_attention_heads": 32, "num_key_value_heads": 8, "num_hidden_layers": 32, "rms_norm_eps": 1e-05, "vocab_size": 32000,
                 "max_position_embeddings": 32768, "rope_theta": 1000000.0, "sliding_window": null, "hidden_act": "silu",
                 "mm_vision_tower": "openai/clip-vit-large-patch14-336", "mm_hidden_size": 1024, "mm_projector_type": "mlp2x_gelu",
                 "mm_vision_select_layer": -2, "mm_vision_select_feature": "patch"}
                """);
            var v15 = Presets.FromFolder(dir);
            Assert.Equal("mistral", ((LlavaConfig)v15.Config).TextConfig.ModelType);
            Assert.Null(((LlavaConfig)v15.Config).TextConfig.SlidingWindow);   // explicit null: no window
            using (var m = v15.BuildOnMeta())
                Assert.Equal(7_566_219_264, TuningStrategy.Parse("full", v15.Layout).Apply(m).Total);

            File.WriteAllText(Path.Combine(dir, "config.json"), """{"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2"}""");
            var e = Assert.Throws<MedPeftException>(() => Presets.FromFolder(dir));
            Assert.Contains("unsupported architecture", e.Message);
        }
        finally { Directory.Delete(dir, true); }
    }
}
