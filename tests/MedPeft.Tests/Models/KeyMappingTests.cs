using System.Collections;
using System.Text.RegularExpressions;
using MedPeft.Models;
using MedPeft.Models.Blip;
using MedPeft.Models.Llava;
using TorchSharp;
using TorchSharp.PyBridge;
using static TorchSharp.torch;

namespace MedPeft.Tests.Models;

/// <summary>The fixture models, their HF keys turned back into the original BLIP / LLaVA layouts (the inverse of
/// KeyMapping, written independently here), and scratch folders.</summary>
public static class OriginalLayouts
{
    public static string BlipHfToOriginal(string k)
    {
        const string v = "vision_model.";
        if (!k.StartsWith(v)) return k;
        var r = k[v.Length..];
        r = r switch
        {
            "embeddings.class_embedding" => "cls_token",
            "embeddings.position_embedding" => "pos_embed",
            _ when r.StartsWith("embeddings.patch_embedding.") => "patch_embed.proj." + r["embeddings.patch_embedding.".Length..],
            _ when r.StartsWith("post_layernorm.") => "norm." + r["post_layernorm.".Length..],
            _ => Regex.Replace(r, @"^encoder\.layers\.(\d+)\.", "blocks.$1.")
                      .Replace(".layer_norm1.", ".norm1.").Replace(".layer_norm2.", ".norm2.")
                      .Replace(".self_attn.projection.", ".attn.proj.").Replace(".self_attn.qkv.", ".attn.qkv."),
        };
        return "visual_encoder." + r;
    }

    public static string LlavaHfToOriginal(string k)
    {
        if (k.StartsWith("language_model.model.")) return k["language_model.".Length..];
        if (k.StartsWith("language_model.lm_head.")) return k["language_model.".Length..];
        if (k.StartsWith("multi_modal_projector.linear_1.")) return "model.mm_projector.0." + k["multi_modal_projector.linear_1.".Length..];
        if (k.StartsWith("multi_modal_projector.linear_2.")) return "model.mm_projector.2." + k["multi_modal_projector.linear_2.".Length..];
        if (k.StartsWith("vision_tower.vision_model.")) return "model.vision_tower.vision_tower." + k["vision_tower.".Length..];
        return k;
    }

    public static BlipForQuestionAnswering NewBlip() => new(BlipConfig.Load(Fixtures.Path("hf", "blip_vqa", "config.json")));
    public static LlavaForConditionalGeneration NewLlava() => new(LlavaConfig.Load(Fixtures.Path("hf", "llava", "config.json")));

    public static BlipForQuestionAnswering FixtureBlip()
    {
        var m = NewBlip();
        Checkpoint.LoadSafetensors(m, Fixtures.Path("hf", "blip_vqa", "model.safetensors"));
        m.eval();
        return m;
    }

    public static LlavaForConditionalGeneration FixtureLlava()
    {
        var m = NewLlava();
        Checkpoint.LoadSafetensors(m, Fixtures.Path("hf", "llava", "model.safetensors"));
        m.eval();
        return m;
    }

    public static Tensor BlipLogits(BlipForQuestionAnswering m)
    {
        var x = Fixtures.Load("hf", "blip_vqa", "inputs.safetensors");
        using var _ = torch.no_grad();
        return m.forward(new BlipVqaInput(x["pixel_values"], x["input_ids"], x["attention_mask"], Labels: x["labels"])).DecoderLogits;
    }

    public static Tensor LlavaLogits(LlavaForConditionalGeneration m)
    {
        var x = Fixtures.Load("hf", "llava", "inputs.safetensors");
        using var _ = torch.no_grad();
        return m.forward(new LlavaInput(x["input_ids"], x["pixel_values"], x["attention_mask"], x["labels"])).Logits;
    }

    /// <summary>The fixture's tensors under renamed keys (HF file order).</summary>
    public static Dictionary<string, Tensor> Renamed(string fixture, Func<string, string> rename) =>
        Checkpoint.ReadSafetensors(Fixtures.Path("hf", fixture, "model.safetensors")).ToDictionary(kv => rename(kv.Key), kv => kv.Value);

    public static void Pickle(string file, IDictionary dict) => PyTorchPickler.PickleStateDict(file, dict);

    public static string TempDir()
    {
        var d = Path.Combine(Path.GetTempPath(), "medpeft-ckpt-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(d);
        return d;
    }

    public static void AssertSame(Tensor expected, Tensor actual, string what) =>
        Assert.True(Same(expected, actual), $"{what}: outputs differ");

    /// <summary>Same shape, dtype and every element equal.</summary>
    public static bool Same(Tensor a, Tensor b) =>
        a.shape.SequenceEqual(b.shape) && a.dtype == b.dtype && a.eq(b).all().item<bool>();
}

public class KeyMappingTests
{
    [Fact]
    public void Blip_original_keys_map_to_hf_names()
    {
        string[] orig =
        [
            "visual_encoder.cls_token", "visual_encoder.pos_embed", "visual_encoder.patch_embed.proj.weight", "visual_encoder.patch_embed.proj.bias",
            "visual_encoder.blocks.0.norm1.weight", "visual_encoder.blocks.11.norm2.bias", "visual_encoder.blocks.3.attn.qkv.weight",
            "visual_encoder.blocks.3.attn.proj.bias", "visual_encoder.blocks.10.mlp.fc1.weight", "visual_encoder.norm.weight",
            "text_encoder.encoder.layer.0.crossattention.self.query.weight", "text_encoder.embeddings.word_embeddings.weight",
            "text_decoder.bert.encoder.layer.5.attention.output.LayerNorm.weight", "text_decoder.cls.predictions.decoder.weight",
            "text_decoder.cls.predictions.bias",
            "text_encoder.embeddings.position_ids", "text_decoder.bert.embeddings.position_ids", "visual_encoder_m.cls_token", "itm_head.weight",
        ];
        var map = KeyMapping.BlipOriginalToHf(orig);
        Assert.Equal(CheckpointLayout.OriginalBlip, map.From);
        Assert.Equal("vision_model.embeddings.class_embedding", map.Renames["visual_encoder.cls_token"]);
        Assert.Equal("vision_model.embeddings.position_embedding", map.Renames["visual_encoder.pos_embed"]);
        Assert.Equal("vision_model.embeddings.patch_embedding.weight", map.Renames["visual_encoder.patch_embed.proj.weight"]);
        Assert.Equal("vision_model.embeddings.patch_embedding.bias", map.Renames["visual_encoder.patch_embed.proj.bias"]);
        Assert.Equal("vision_model.encoder.layers.0.layer_norm1.weight", map.Renames["visual_encoder.blocks.0.norm1.weight"]);
        Assert.Equal("vision_model.encoder.layers.11.layer_norm2.bias", map.Renames["visual_encoder.blocks.11.norm2.bias"]);
        Assert.Equal("vision_model.encoder.layers.3.self_attn.qkv.weight", map.Renames["visual_encoder.blocks.3.attn.qkv.weight"]);
        Assert.Equal("vision_model.encoder.layers.3.self_attn.projection.bias", map.Renames["visual_encoder.blocks.3.attn.proj.bias"]);
        Assert.Equal("vision_model.encoder.layers.10.mlp.fc1.weight", map.Renames["visual_encoder.blocks.10.mlp.fc1.weight"]);
        Assert.Equal("vision_model.post_layernorm.weight", map.Renames["visual_encoder.norm.weight"]);
        foreach (var k in orig.Where(k => k.StartsWith("text_") && !k.EndsWith("position_ids"))) Assert.Equal(k, map.Renames[k]);
        Assert.Equal(["text_encoder.embeddings.position_ids", "text_decoder.bert.embeddings.position_ids", "visual_encoder_m.cls_token", "itm_head.weight"], map.Dropped);
    }

    [Fact]
    public void Llava_original_keys_map_to_hf_names()
    {
        string[] orig =
        [
            "model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight", "model.layers.31.mlp.down_proj.weight",
            "model.layers.0.self_attn.rotary_emb.inv_freq", "model.norm.weight", "lm_head.weight",
            "model.mm_projector.0.weight", "model.mm_projector.0.bias", "model.mm_projector.2.weight", "model.mm_projector.2.bias",
            "model.vision_tower.vision_tower.vision_model.embeddings.class_embedding",
            "model.vision_tower.vision_tower.vision_model.encoder.layers.23.self_attn.out_proj.weight",
            "model.vision_tower.vision_tower.vision_model.embeddings.position_ids", "model.image_newline",
        ];
        var map = KeyMapping.LlavaOriginalToHf(orig);
        Assert.Equal("language_model.model.embed_tokens.weight", map.Renames["model.embed_tokens.weight"]);
        Assert.Equal("language_model.model.layers.0.self_attn.q_proj.weight", map.Renames["model.layers.0.self_attn.q_proj.weight"]);
        Assert.Equal("language_model.model.layers.31.mlp.down_proj.weight", map.Renames["model.layers.31.mlp.down_proj.weight"]);
        Assert.Equal("language_model.model.norm.weight", map.Renames["model.norm.weight"]);
        Assert.Equal("language_model.lm_head.weight", map.Renames["lm_head.weight"]);
        Assert.Equal("multi_modal_projector.linear_1.weight", map.Renames["model.mm_projector.0.weight"]);
        Assert.Equal("multi_modal_projector.linear_1.bias", map.Renames["model.mm_projector.0.bias"]);
        Assert.Equal("multi_modal_projector.linear_2.weight", map.Renames["model.mm_projector.2.weight"]);
        Assert.Equal("vision_tower.vision_model.embeddings.class_embedding", map.Renames["model.vision_tower.vision_tower.vision_model.embeddings.class_embedding"]);
        Assert.Equal("vision_tower.vision_model.encoder.layers.23.self_attn.out_proj.weight",
            map.Renames["model.vision_tower.vision_tower.vision_model.encoder.layers.23.self_attn.out_proj.weight"]);
        Assert.Equal(["model.layers.0.self_attn.rotary_emb.inv_freq", "model.vision_tower.vision_tower.vision_model.embeddings.position_ids", "model.image_newline"], map.Dropped);
        Assert.Empty(map.Extra);
    }

    [Fact]
    public void Llava_med_v1_linear_projector_separate_clip_and_missing_lm_head()
    {
        string[] llm = ["model.embed_tokens.weight", "model.layers.0.input_layernorm.weight", "model.norm.weight", "model.mm_projector.weight", "model.mm_projector.bias"];
        string[] clip = ["vision_model.embeddings.class_embedding", "vision_model.post_layernorm.weight", "text_model.embeddings.token_embedding.weight", "logit_scale", "visual_projection.weight"];
        Assert.Equal(CheckpointLayout.Clip, KeyMapping.Detect(clip));
        var map = KeyMapping.LlavaOriginalToHf(llm.Concat(clip));
        Assert.Equal("multi_modal_projector.linear_1.weight", map.Renames["model.mm_projector.weight"]);
        Assert.Equal("multi_modal_projector.linear_1.bias", map.Renames["model.mm_projector.bias"]);
        Assert.Equal("vision_tower.vision_model.post_layernorm.weight", map.Renames["vision_model.post_layernorm.weight"]);
        Assert.Equal(["text_model.embeddings.token_embedding.weight", "logit_scale", "visual_projection.weight"], map.Dropped);
        // No lm_head in the checkpoint (tied): the embedding also fills lm_head, as HF's converter clones it.
        Assert.Equal(["language_model.model.embed_tokens.weight", "language_model.lm_head.weight"], map.TargetsOf("model.embed_tokens.weight"));
    }

    [Fact]
    public void Layout_detection()
    {
        Assert.Equal(CheckpointLayout.OriginalBlip, KeyMapping.Detect(["visual_encoder.cls_token", "text_encoder.embeddings.word_embeddings.weight"]));
        Assert.Equal(CheckpointLayout.HfBlip, KeyMapping.Detect(["vision_model.embeddings.class_embedding", "text_decoder.cls.predictions.bias"]));
        Assert.Equal(CheckpointLayout.OriginalLlava, KeyMapping.Detect(["model.layers.0.mlp.up_proj.weight", "lm_head.weight"]));
        Assert.Equal(CheckpointLayout.HfLlava, KeyMapping.Detect(["language_model.model.norm.weight", "multi_modal_projector.linear_1.weight"]));
        Assert.Equal(CheckpointLayout.Unknown, KeyMapping.Detect(["foo.bar"]));
        var fixtureKeys = CheckpointFiles.ReadKeys(Fixtures.Path("hf", "blip_vqa"));
        Assert.Equal(CheckpointLayout.HfBlip, KeyMapping.Detect(fixtureKeys));
        Assert.Equal(CheckpointLayout.OriginalBlip, KeyMapping.Detect(fixtureKeys.Select(OriginalLayouts.BlipHfToOriginal)));
        Assert.Equal(CheckpointLayout.HfLlava, KeyMapping.Detect(CheckpointFiles.ReadKeys(Fixtures.Path("hf", "llava"))));
        var e = Assert.Throws<MedPeftException>(() => KeyMapping.ToHf(fixtureKeys.ToList(), CheckpointLayout.HfLlava, "x.safetensors"));
        Assert.Contains("x.safetensors", e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void Mapping_inverts_the_test_inverse_on_every_fixture_key()
    {
        var blip = CheckpointFiles.ReadKeys(Fixtures.Path("hf", "blip_vqa"));
        var bmap = KeyMapping.BlipOriginalToHf(blip.Select(OriginalLayouts.BlipHfToOriginal));
        Assert.All(blip, k => Assert.Equal(k, bmap.Renames[OriginalLayouts.BlipHfToOriginal(k)]));
        Assert.Contains("visual_encoder.blocks.1.attn.qkv.weight", bmap.Renames.Keys);
        var llava = CheckpointFiles.ReadKeys(Fixtures.Path("hf", "llava"));
        var lmap = KeyMapping.LlavaOriginalToHf(llava.Select(OriginalLayouts.LlavaHfToOriginal));
        Assert.All(llava, k => Assert.Equal(k, lmap.Renames[OriginalLayouts.LlavaHfToOriginal(k)]));
    }

    [Fact]
    public void Blip_original_layout_round_trips_through_safetensors_and_a_wrapped_pickle()
    {
        using var reference = OriginalLayouts.FixtureBlip();
        var expected = OriginalLayouts.BlipLogits(reference);
        var dir = OriginalLayouts.TempDir();
        try
        {
            var orig = OriginalLayouts.Renamed("blip_vqa", OriginalLayouts.BlipHfToOriginal);
            Assert.Contains("visual_encoder.blocks.0.attn.qkv.weight", orig.Keys);
            // What the original BLIP code also saves: position_ids buffers.
            orig["text_encoder.embeddings.position_ids"] = torch.arange(32).unsqueeze(0);
            orig["text_decoder.bert.embeddings.position_ids"] = torch.arange(32).unsqueeze(0);

            var st = Path.Combine(dir, "orig.safetensors");
            Safetensors.SaveStateDict(st, orig);
            using (var m = OriginalLayouts.NewBlip())
            {
                var r = CheckpointFiles.LoadInto(m, st, CheckpointLayout.HfBlip);
                Assert.True(r.Ok);
                m.eval();
                OriginalLayouts.AssertSame(expected, OriginalLayouts.BlipLogits(m), "safetensors, original layout");
            }

            // The original BLIP / MISS .pth: {"model": state_dict, "epoch": …}.
            var pth = Path.Combine(dir, "checkpoint_best.pth");
            OriginalLayouts.Pickle(pth, new Hashtable { ["model"] = orig, ["epoch"] = 7 });
            using (var m = OriginalLayouts.NewBlip())
            {
                CheckpointFiles.LoadInto(m, pth, CheckpointLayout.HfBlip);
                m.eval();
                OriginalLayouts.AssertSame(expected, OriginalLayouts.BlipLogits(m), "pickle, original layout");
            }
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void Llava_original_layout_round_trips_through_sharded_safetensors_and_a_pickle()
    {
        using var reference = OriginalLayouts.FixtureLlava();
        var expected = OriginalLayouts.LlavaLogits(reference);
        var dir = OriginalLayouts.TempDir();
        try
        {
            var orig = OriginalLayouts.Renamed("llava", OriginalLayouts.LlavaHfToOriginal);
            Assert.Contains("model.mm_projector.2.weight", orig.Keys);
            orig["model.layers.0.self_attn.rotary_emb.inv_freq"] = torch.ones(8);   // saved by older LLaVA code

            // Two safetensors shards + index, as LLaVA-Med v1.5 publishes.
            var keys = orig.Keys.OrderBy(k => k, StringComparer.Ordinal).ToList();
            var shards = new[] { keys.Take(keys.Count / 2).ToList(), keys.Skip(keys.Count / 2).ToList() };
            var weightMap = new Dictionary<string, string>();
            for (int i = 0; i < 2; i++)
            {
                var name = $"model-0000{i + 1}-of-00002.safetensors";
                Safetensors.SaveStateDict(Path.Combine(dir, name), shards[i].ToDictionary(k => k, k => orig[k]));
                foreach (var k in shards[i]) weightMap[k] = name;
            }
            File.WriteAllText(Path.Combine(dir, CheckpointFiles.SafetensorsIndexFile),
                System.Text.Json.JsonSerializer.Serialize(new { metadata = new { total_size = 0 }, weight_map = weightMap }));
            using (var m = OriginalLayouts.NewLlava())
            {
                CheckpointFiles.LoadInto(m, dir, CheckpointLayout.HfLlava);
                m.eval();
                OriginalLayouts.AssertSame(expected, OriginalLayouts.LlavaLogits(m), "sharded safetensors, original layout");
            }

            var bin = Path.Combine(dir, "model_state_dict.bin");
            OriginalLayouts.Pickle(bin, orig);
            using (var m = OriginalLayouts.NewLlava())
            {
                CheckpointFiles.LoadInto(m, bin, CheckpointLayout.HfLlava);
                m.eval();
                OriginalLayouts.AssertSame(expected, OriginalLayouts.LlavaLogits(m), "pickle, original layout");
            }
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void Llava_linear_projector_loads_from_a_single_mm_projector()
    {
        var c = LlavaConfig.Load(Fixtures.Path("hf", "llava", "config.json"));
        c.ProjectorType = "linear";
        using var src = new LlavaForConditionalGeneration(c);
        var orig = src.state_dict().ToDictionary(kv => kv.Key switch
        {
            "multi_modal_projector.linear_1.weight" => "model.mm_projector.weight",
            "multi_modal_projector.linear_1.bias" => "model.mm_projector.bias",
            var k => OriginalLayouts.LlavaHfToOriginal(k),
        }, kv => kv.Value);
        var dir = OriginalLayouts.TempDir();
        try
        {
            var file = Path.Combine(dir, "model.safetensors");
            Safetensors.SaveStateDict(file, orig);
            using var dst = new LlavaForConditionalGeneration(c);
            CheckpointFiles.LoadInto(dst, dir, CheckpointLayout.HfLlava);
            Assert.True(OriginalLayouts.Same(((TorchSharp.Modules.Linear)src.multi_modal_projector.linear_1).weight, ((TorchSharp.Modules.Linear)dst.multi_modal_projector.linear_1).weight));
            Assert.True(OriginalLayouts.Same(src.language_model.lm_head.parameters().First(), dst.language_model.lm_head.parameters().First()));

            // A tied checkpoint without lm_head: the embedding fills lm_head too.
            orig.Remove("lm_head.weight");
            Safetensors.SaveStateDict(file, orig);
            using var tied = new LlavaForConditionalGeneration(c);
            CheckpointFiles.LoadInto(tied, dir, CheckpointLayout.HfLlava);
            Assert.True(OriginalLayouts.Same(src.language_model.model.embed_tokens.weight, tied.language_model.lm_head.parameters().First()));
        }
        finally { Directory.Delete(dir, true); }
    }
}
