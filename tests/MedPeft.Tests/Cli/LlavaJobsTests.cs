using System.Text.Json.Nodes;
using MedPeft.Data;
using MedPeft.Data.Synthetic;
using MedPeft.Experiments;
using MedPeft.Models;
using MedPeft.Models.Clip;
using MedPeft.Models.Llama;
using MedPeft.Models.Llava;
using MedPeft.Tests.Data;
using TorchSharp;
using static TorchSharp.torch;

namespace MedPeft.Tests.Cli;

/// <summary>LLaVA train/eval: prompts and labels, beam search with the cache, generation_config.json, the image token
/// of original-layout folders, and `medpeft train` / `medpeft eval` on a tiny random LLaVA folder.</summary>
public class LlavaJobsTests
{
    public static LlavaConfig TinyConfig(string textType) => new LlavaConfig
    {
        Architectures = ["LlavaForConditionalGeneration"],
        VisionConfig = new CLIPVisionConfig { HiddenSize = 32, IntermediateSize = 64, NumHiddenLayers = 2, NumAttentionHeads = 4, PatchSize = 8, ImageSize = 32, ProjectionDim = 32 },
        TextConfig = new LlamaConfig
        {
            ModelType = textType, VocabSize = TinyTokenizers.VocabSize, HiddenSize = 32, IntermediateSize = 64, NumHiddenLayers = 2,
            NumAttentionHeads = 4, NumKeyValueHeads = 2, MaxPositionEmbeddings = 512, SlidingWindow = textType == "mistral" ? 24 : null,
        },
        ImageTokenIndex = TinyTokenizers.ImageId,
        PadTokenId = TinyTokenizers.PadId,
    }.Validate("tiny");

    /// <summary>A random tiny LLaVA folder: config.json, model.safetensors, tokenizer.json, tokenizer_config.json.</summary>
    public static string TinyFolder(string root, string textType = "mistral", long seed = 7)
    {
        var dir = Path.Combine(root, "llava-" + textType);
        TinyTokenizers.WriteTokenizerJson(dir);
        TinyTokenizers.WriteTokenizerConfig(dir);
        var c = TinyConfig(textType);
        TorchRuntime.Seed(seed);
        using var m = new LlavaForConditionalGeneration(c);
        File.WriteAllText(Path.Combine(dir, "config.json"), c.ToJson());
        Checkpoint.SaveSafetensors(m, Path.Combine(dir, "model.safetensors"));
        return dir;
    }

    [Fact]
    public void Batches_are_left_padded_with_labels_only_on_answer_and_eos()
    {
        var root = Directory.CreateTempSubdirectory("medpeft-llava-batch-").FullName;
        try
        {
            using var s = LlavaJobs.Open(TinyFolder(root), CPU, template: null);
            Assert.Equal("llava-med-v1.5", s.Template.Name);   // Mistral ⇒ LLaVA-Med v1.5's template
            var prompt = LlavaJobs.PromptIds(s, "the xray?");
            // "[INST] <image>\nthe xray? [/INST]": BOS, "[INST] " (bytes), the image id, then the rest.
            Assert.Equal(1, prompt[0]);
            Assert.Equal(1, prompt.Count(t => t == TinyTokenizers.ImageId));
            Assert.Equal(s.Tokenizer.Encode("[INST] ", true), prompt[..Array.IndexOf(prompt, TinyTokenizers.ImageId)]);
            var img = Path.Combine(root, "a.png");
            using (var bmp = new SkiaSharp.SKBitmap(40, 30))
            {
                bmp.Erase(SkiaSharp.SKColors.Gray);
                using var png = bmp.Encode(SkiaSharp.SKEncodedImageFormat.Png, 100);
                File.WriteAllBytes(img, png.ToArray());
            }
            using var images = new ImageCache(new ImageProcessor(32, Normalization.Clip));
            var samples = new List<VqaSample> { new("1", img, "the xray?", "the xray", "OPEN"), new("2", img, "the?", "ray", "OPEN") };
            var b = LlavaJobs.Batch(s, samples, images, CPU, withLabels: true);
            var ids = b.InputIds.data<long>().ToArray(); var mask = b.AttentionMask.data<long>().ToArray(); var labels = b.Labels!.data<long>().ToArray();
            int w = (int)b.InputIds.shape[1];
            // Row 0 is the longest: no padding; its labels are the answer ids then EOS.
            Assert.All(mask[..w], m => Assert.Equal(1, m));
            var supervised = labels[..w].Where(l => l != -100).ToArray();
            Assert.Equal([Id("▁the"), Id("▁x"), Id("ray"), 2], supervised);
            Assert.Equal(ids[(w - 4)..w], supervised);
            // Row 1 is left-padded with <pad>, mask 0 there, labels −100 on pads and prompt.
            Assert.Equal(TinyTokenizers.PadId, ids[w]);
            Assert.Equal(0, mask[w]);
            Assert.Equal([Id("▁"), Id("ray"), 2], labels[w..].Where(l => l != -100).Select(l => (int)l));
        }
        finally { Directory.Delete(root, true); }
    }

    static int Id(string p) => TinyTokenizers.Id(p);

    /// <summary>With a soft prompt (prompt, ptuning-v1) too: the cached search must run the prompt in its first step as
    /// the full recomputation (forward) does — issue 11: GenerateBeams ignored InputPrompt.</summary>
    [Theory]
    [InlineData(null)]
    [InlineData("prompt@llm")]
    [InlineData("ptuning-v1@llm")]
    public void Beam_search_with_the_kv_cache_equals_beam_search_recomputing_the_whole_sequence(string? strategy)
    {
        TorchRuntime.Seed(11);
        using var m = new LlavaForConditionalGeneration(TinyConfig("mistral"));
        if (strategy is not null) MedPeft.Tuning.TuningStrategy.Parse(strategy, MedPeft.Tuning.TowerLayout.Llava).Apply(m);
        m.eval();
        var ids = torch.tensor(new long[,] { { TinyTokenizers.PadId, 1, TinyTokenizers.ImageId, 265, 270 }, { 1, 266, TinyTokenizers.ImageId, 272, 260 } });
        var mask = torch.tensor(new long[,] { { 0, 1, 1, 1, 1 }, { 1, 1, 1, 1, 1 } });
        var pixels = torch.randn(2, 3, 32, 32);
        var o = new GenerationOptions(MaxNewTokens: 12, NumBeams: 3, EosTokenId: 2, PadTokenId: TinyTokenizers.PadId);
        var cached = m.GenerateBeams(pixels, ids, mask, o);
        using var _ = torch.no_grad();
        var px = pixels.repeat_interleave(3, 0);
        var pm = mask.repeat_interleave(3, 0);
        var full = Generation.BeamSearch(running =>
        {
            var ext = torch.cat([pm, torch.ones(pm.shape[0], running.shape[1] - pm.shape[1], dtype: ScalarType.Int64)], 1);
            return m.forward(new LlavaInput(running, px, ext)).Logits[.., -1, ..];
        }, ids.repeat_interleave(3, 0), o);
        Assert.Equal(full.Sequences, cached.Sequences);
        Assert.True(cached.Sequences[0].Length > 5);
    }

    [Fact]
    public void Generation_config_json_gives_decoding_defaults_and_the_cli_overrides_them()
    {
        var llava = GenerationConfigFile.Read(Fixtures.Path("hf", "llava"));
        var fallback = new GenerationOptions(MaxNewTokens: 32, NumBeams: 1, EosTokenId: 99, PadTokenId: 98);
        Assert.Equal(fallback with { EosTokenId = 2, PadTokenId = 0 }, llava.ForDecoderOnly(fallback));
        // BLIP's generate passes sep/pad explicitly: the file's eos 2 / pad 0 do not replace [SEP] 102.
        var blip = GenerationConfigFile.Read(Fixtures.Path("hf", "blip_vqa"));
        Assert.Equal(2, blip.EosTokenId);
        Assert.Equal(MedPeft.Evaluation.VqaEvaluation.MissDecoding, blip.ForBlip(MedPeft.Evaluation.VqaEvaluation.MissDecoding));

        var dir = Directory.CreateTempSubdirectory("medpeft-gencfg-").FullName;
        try
        {
            File.WriteAllText(Path.Combine(dir, "generation_config.json"), """{"max_new_tokens": 5, "num_beams": 2, "eos_token_id": [7, 8], "length_penalty": 0.5}""");
            var g = GenerationConfigFile.Read(dir);
            Assert.Equal(fallback with { MaxNewTokens = 5, NumBeams = 2, EosTokenId = 7, LengthPenalty = 0.5 }, g.ForDecoderOnly(fallback));
            Assert.Equal(4, new DecodingOverrides(NumBeams: 4).ApplyTo(g.ForDecoderOnly(fallback)).NumBeams);
            File.WriteAllText(Path.Combine(dir, "generation_config.json"), """{"max_length": 10, "min_length": 3}""");
            var b = GenerationConfigFile.Read(dir).ForBlip(MedPeft.Evaluation.VqaEvaluation.MissDecoding);
            Assert.Equal((9, 2), (b.MaxNewTokens, b.MinNewTokens));   // BLIP's [DEC] prompt counts in max_length
            File.WriteAllText(Path.Combine(dir, "generation_config.json"), """{"num_beams": "three"}""");
            Assert.Contains("num_beams", Assert.Throws<MedPeftException>(() => GenerationConfigFile.Read(dir)).Message);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void Original_layout_folders_take_the_image_token_from_the_tokenizer_else_the_hf_default()
    {
        var dir = Directory.CreateTempSubdirectory("medpeft-orig-").FullName;
        try
        {
            File.WriteAllText(Path.Combine(dir, "config.json"), """
                {"architectures": ["LlavaMistralForCausalLM"], "model_type": "llava_mistral", "hidden_size": 64, "intermediate_size": 128,
                 "num_attention_heads": 4, "num_key_value_heads": 2, "num_hidden_layers": 2, "vocab_size": 300, "sliding_window": null,
                 "mm_vision_tower": "openai/clip-vit-large-patch14-336", "mm_projector_type": "mlp2x_gelu"}
                """);
            var none = Presets.FromFolder(dir);
            Assert.Equal(32000, ((LlavaConfig)none.Config).ImageTokenIndex);
            Assert.Contains(none.Notes, n => n.Contains("HF LlavaConfig's default") && n.Contains("no tokenizer"));
            Assert.True(none.OriginalLayout);

            TinyTokenizers.WriteTokenizerJson(dir, withImage: false);
            Assert.Contains(Presets.FromFolder(dir).Notes, n => n.Contains("tokenizer has no <image> token"));

            TinyTokenizers.WriteTokenizerJson(dir, withImage: true);
            var with = Presets.FromFolder(dir);
            Assert.Equal(TinyTokenizers.ImageId, ((LlavaConfig)with.Config).ImageTokenIndex);
            Assert.Contains(with.Notes, n => n.Contains($"image_token_index {TinyTokenizers.ImageId}: the tokenizer's <image> token"));
            Assert.True(((LlavaConfig)with.Config).TextConfig.IsMistral);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void Train_and_eval_a_tiny_llava_folder_through_the_cli()
    {
        var root = Directory.CreateTempSubdirectory("medpeft-llava-cli-").FullName;
        try
        {
            var model = TinyFolder(root);
            var data = Path.Combine(root, "bench");
            SyntheticBench.EnsureGenerated(data, SyntheticBenchOptions.Quick with
            {
                TrainImages = 8, ValidationImages = 2, TestImages = 2, PretrainImages = 1, ReportTrain = 1, ReportVal = 1, ReportTest = 1,
            });
            var outDir = Path.Combine(root, "run");
            var r = CliRunner.Run("train", "--model", model, "--data", data, "--format", "slake", "--strategy", "ln@llm",
                "--max-steps", "3", "--batch-size", "4", "--eval-every", "3", "--out", outDir, "--threads", "2");
            Assert.True(r.ExitCode == 0, r.StdErr + r.StdOut);
            Assert.Contains("conversation template llava-med-v1.5", r.StdErr);
            var summary = JsonNode.Parse(File.ReadAllText(Path.Combine(outDir, "train_summary.json")))!;
            Assert.Equal(3, summary["steps"]!.GetValue<int>());
            Assert.Equal("LN_TUNING", summary["adapter"]!.GetValue<string>());
            Assert.Equal("llava-med-v1.5", summary["template"]!.GetValue<string>());
            Assert.Equal((2 * 2 + 1) * 32, summary["trainable"]!.GetValue<long>());   // RMSNorm weights of the LLM
            var losses = File.ReadAllLines(Path.Combine(outDir, "log.jsonl")).Select(l => JsonNode.Parse(l)!).Where(l => l["loss"] is not null).ToList();
            Assert.All(losses, l => Assert.True(double.IsFinite(l["loss"]!.GetValue<double>())));
            var saved = JsonNode.Parse(File.ReadAllText(Path.Combine(outDir, "model", "config.json")))!;
            Assert.Equal("llava-med-v1.5", saved["conversation_template"]!.GetValue<string>());
            Assert.True(File.Exists(Path.Combine(outDir, "model", "tokenizer.json")));

            var preds = Path.Combine(root, "preds.jsonl");
            var e = CliRunner.Run("eval", "--model", Path.Combine(outDir, "model"), "--data", data, "--format", "slake", "--split", "test",
                "--num-beams", "2", "--max-new-tokens", "6", "--predictions", preds, "--json", "--threads", "2");
            Assert.True(e.ExitCode == 0, e.StdErr + e.StdOut);
            var scores = JsonNode.Parse(e.StdOut)!;
            int n = File.ReadAllLines(preds).Length;
            Assert.True(n > 0);
            Assert.Equal(n, scores["closed"]!.GetValue<int>() + scores["open"]!.GetValue<int>());
            var bad = CliRunner.Run("eval", "--model", model, "--data", data, "--template", "chatml");
            Assert.NotEqual(0, bad.ExitCode);
            Assert.Contains("--template chatml", bad.StdErr + bad.StdOut);
        }
        finally { Directory.Delete(root, true); }
    }

    [Fact]
    public void Report_generation_trains_and_scores_through_the_cli()
    {
        var root = Directory.CreateTempSubdirectory("medpeft-llava-rep-").FullName;
        try
        {
            var model = TinyFolder(root, textType: "llama");
            var data = Path.Combine(root, "bench");
            SyntheticBench.EnsureGenerated(data, SyntheticBenchOptions.Quick with
            {
                TrainImages = 2, ValidationImages = 1, TestImages = 1, PretrainImages = 1, ReportTrain = 4, ReportVal = 1, ReportTest = 3,
            });
            var outDir = Path.Combine(root, "run");
            var r = CliRunner.Run("train", "--model", model, "--data", data, "--format", "iu-xray", "--strategy", "ln",
                "--max-steps", "2", "--batch-size", "2", "--out", outDir, "--threads", "2");
            Assert.True(r.ExitCode == 0, r.StdErr + r.StdOut);
            Assert.Contains("conversation template llava-v1", r.StdErr);   // HF-layout LLaMA ⇒ LLaVA 1.5's vicuna_v1
            var summary = JsonNode.Parse(File.ReadAllText(Path.Combine(outDir, "train_summary.json")))!;
            Assert.Equal("report", summary["task"]!.GetValue<string>());

            var pairs = Path.Combine(root, "pairs.json");
            var e = CliRunner.Run("eval", "--task", "report", "--model", Path.Combine(outDir, "model"), "--data", data, "--format", "iu-xray",
                "--max-new-tokens", "8", "--predictions", pairs, "--json", "--threads", "2");
            Assert.True(e.ExitCode == 0, e.StdErr + e.StdOut);
            var scores = JsonNode.Parse(e.StdOut)!;
            var saved = MedPeft.Evaluation.ReportPairsFile.Load(pairs);
            Assert.Equal(3, saved.Count);
            Assert.All(saved, p => Assert.EndsWith(" .", p.References[0]));   // R2Gen-cleaned references
            // The pairs file is the `score report` format and rescoring it gives the printed scores.
            Assert.Equal(scores["BLEU_4"]!.GetValue<double>(), MedPeft.Evaluation.ReportMetrics.Compute(saved).Bleu4, 9);
            var e2 = Assert.Throws<MedPeftException>(() => LlavaJobs.EvaluateReports(model, data, "slake", "test", null));
            Assert.Contains("not a report dataset", e2.Message);
        }
        finally { Directory.Delete(root, true); }
    }

    [Fact]
    public void LlavaMed_v1_prompts_put_the_bracketed_image_after_the_question()
    {
        var dir = Directory.CreateTempSubdirectory("medpeft-v1-").FullName;
        try
        {
            TinyTokenizers.WriteTokenizerJson(dir);
            var c = TinyConfig("llama");
            using var s = new LlavaSession
            {
                Model = new LlavaForConditionalGeneration(c), Spec = Presets.Llava("tiny", c), Tokenizer = TextTokenizers.Load(dir),
                Template = ConversationTemplates.LlavaMedV1, Dir = dir, PadId = 0, EosId = 2, ImageBrackets = (Id("s"), Id("i")), Geometry = ImageGeometry.Square,
            };
            var ids = LlavaJobs.PromptIds(s, "the xray?");
            int at = Array.IndexOf(ids, TinyTokenizers.ImageId);
            Assert.Equal([Id("s"), TinyTokenizers.ImageId, Id("i")], ids[(at - 1)..(at + 2)]);
            // "…###Human: the xray?\n" precedes it: the question's pieces come before the image.
            Assert.True(Array.IndexOf(ids, Id("ray")) < at);
            Assert.Equal(s.Tokenizer.Encode("###Assistant:", false), ids[(at + 2)..]);
            Assert.Equal(1, ids[0]);
        }
        finally { Directory.Delete(dir, true); }
    }
}
