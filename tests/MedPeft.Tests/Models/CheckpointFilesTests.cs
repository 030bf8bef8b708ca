using System.Collections;
using MedPeft.Models;
using TorchSharp;
using TorchSharp.PyBridge;
using static TorchSharp.torch;

namespace MedPeft.Tests.Models;

public class CheckpointFilesTests
{
    static Dictionary<string, Tensor> FixtureState() => Checkpoint.ReadSafetensors(Fixtures.Path("hf", "blip_vqa", "model.safetensors"));

    static void AssertSameState(IReadOnlyDictionary<string, Tensor> expected, IReadOnlyDictionary<string, Tensor> actual)
    {
        Assert.Equal(expected.Keys.OrderBy(k => k, StringComparer.Ordinal), actual.Keys.OrderBy(k => k, StringComparer.Ordinal));
        foreach (var (k, t) in expected)
            Assert.True(OriginalLayouts.Same(t, actual[k]), $"{k} differs");
    }

    static MedPeftException OneLine(Action a)
    {
        var e = Assert.Throws<MedPeftException>(a);
        Assert.DoesNotContain('\n', e.Message);
        return e;
    }

    static void WriteShards(string dir, Dictionary<string, Tensor> state, int n, string ext = "safetensors")
    {
        var keys = state.Keys.ToList();
        var map = new Dictionary<string, string>();
        for (int i = 0; i < n; i++)
        {
            var name = $"model-{i + 1:00000}-of-{n:00000}.{ext}";
            var part = keys.Where((_, j) => j % n == i).ToDictionary(k => k, k => state[k]);
            if (ext == "safetensors") Safetensors.SaveStateDict(Path.Combine(dir, name), part);
            else PyTorchPickler.PickleStateDict(Path.Combine(dir, name), part);
            foreach (var k in part.Keys) map[k] = name;
        }
        var index = ext == "safetensors" ? CheckpointFiles.SafetensorsIndexFile : CheckpointFiles.PickleIndexFile;
        File.WriteAllText(Path.Combine(dir, index), System.Text.Json.JsonSerializer.Serialize(new { metadata = new { total_size = 1 }, weight_map = map }));
    }

    [Fact]
    public void Single_safetensors_folder_reads_like_PyBridge()
    {
        var mine = CheckpointFiles.ReadStateDict(Fixtures.Path("hf", "blip_vqa"));
        AssertSameState(FixtureState(), mine);
        Assert.Equal([Fixtures.Path("hf", "blip_vqa", "model.safetensors")], CheckpointFiles.WeightFiles(Fixtures.Path("hf", "blip_vqa")));
        Assert.Equal(149, CheckpointFiles.ReadKeys(Fixtures.Path("hf", "blip_vqa")).Count);
    }

    [Theory]
    [InlineData("safetensors")]
    [InlineData("bin")]
    public void Sharded_checkpoints_read_and_load_shard_by_shard(string ext)
    {
        var state = FixtureState();
        var dir = OriginalLayouts.TempDir();
        try
        {
            WriteShards(dir, state, 3, ext);
            Assert.Equal(3, CheckpointFiles.WeightFiles(dir).Count);
            Assert.Equal(state.Count, CheckpointFiles.ReadKeys(dir).Count);
            AssertSameState(state, CheckpointFiles.ReadStateDict(dir));
            using var reference = OriginalLayouts.FixtureBlip();
            using var m = OriginalLayouts.NewBlip();
            var r = CheckpointFiles.LoadInto(m, dir, CheckpointLayout.HfBlip);
            Assert.True(r.Ok);
            m.eval();
            OriginalLayouts.AssertSame(OriginalLayouts.BlipLogits(reference), OriginalLayouts.BlipLogits(m), $"sharded {ext}");
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void Missing_or_inconsistent_shards_are_one_line_errors_naming_the_file()
    {
        var state = FixtureState();
        var dir = OriginalLayouts.TempDir();
        try
        {
            WriteShards(dir, state, 2);
            File.Delete(Path.Combine(dir, "model-00002-of-00002.safetensors"));
            var e = OneLine(() => CheckpointFiles.ReadStateDict(dir));
            Assert.Contains("model-00002-of-00002.safetensors", e.Message);
            Assert.Contains(CheckpointFiles.SafetensorsIndexFile, e.Message);
            Assert.Contains("not found", e.Message);

            // The index puts a tensor in a shard that does not hold it.
            Safetensors.SaveStateDict(Path.Combine(dir, "model-00002-of-00002.safetensors"), new Dictionary<string, Tensor> { ["x"] = torch.zeros(1) });
            using var m = OriginalLayouts.NewBlip();
            e = OneLine(() => CheckpointFiles.LoadInto(m, dir, CheckpointLayout.HfBlip));
            Assert.Contains("model-00002-of-00002.safetensors", e.Message);
            Assert.Contains("missing from it", e.Message);

            File.WriteAllText(Path.Combine(dir, CheckpointFiles.SafetensorsIndexFile), "{\"metadata\": {}}");
            e = OneLine(() => CheckpointFiles.WeightFiles(dir));
            Assert.Contains("weight_map", e.Message);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void Bad_headers_and_truncated_files_are_one_line_errors_naming_the_file()
    {
        var dir = OriginalLayouts.TempDir();
        try
        {
            var garbage = Path.Combine(dir, "garbage.safetensors");
            File.WriteAllBytes(garbage, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
            var e = OneLine(() => CheckpointFiles.ReadStateDict(garbage));
            Assert.Contains(garbage, e.Message);
            Assert.Contains("bad safetensors header", e.Message);

            var json = Path.Combine(dir, "json.safetensors");
            var header = "{not json"u8.ToArray();
            File.WriteAllBytes(json, [.. BitConverter.GetBytes((ulong)header.Length), .. header]);
            e = OneLine(() => CheckpointFiles.ReadKeys(json));
            Assert.Contains(json, e.Message);
            Assert.Contains("bad safetensors header", e.Message);

            var truncated = Path.Combine(dir, "model.safetensors");
            var bytes = File.ReadAllBytes(Fixtures.Path("hf", "blip_vqa", "model.safetensors"));
            File.WriteAllBytes(truncated, bytes[..^1000]);
            e = OneLine(() => CheckpointFiles.ReadStateDict(dir));
            Assert.Contains(truncated, e.Message);
            Assert.Contains("truncated", e.Message);

            var legacy = Path.Combine(dir, "legacy.pth");
            File.WriteAllBytes(legacy, [0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8]);
            e = OneLine(() => CheckpointFiles.ReadStateDict(legacy));
            Assert.Contains(legacy, e.Message);
            Assert.Contains("legacy", e.Message);

            e = OneLine(() => CheckpointFiles.ReadStateDict(Path.Combine(dir, "nope")));
            Assert.Contains("not found", e.Message);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void Folders_without_a_standard_name_need_exactly_one_candidate()
    {
        var dir = OriginalLayouts.TempDir();
        try
        {
            OneLine(() => CheckpointFiles.WeightFiles(dir));
            var state = new Dictionary<string, Tensor> { ["a"] = torch.ones(2) };
            Safetensors.SaveStateDict(Path.Combine(dir, "a.safetensors"), state);
            Assert.Single(CheckpointFiles.WeightFiles(dir));
            Safetensors.SaveStateDict(Path.Combine(dir, "b.safetensors"), state);
            var e = OneLine(() => CheckpointFiles.WeightFiles(dir));
            Assert.Contains("pass the file", e.Message);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Theory]
    [InlineData(ScalarType.Float16)]
    [InlineData(ScalarType.BFloat16)]
    public void Half_precision_checkpoints_keep_their_dtype_and_load_converted(ScalarType dtype)
    {
        var state = FixtureState().ToDictionary(kv => kv.Key, kv => kv.Value.to(dtype));
        var dir = OriginalLayouts.TempDir();
        try
        {
            Safetensors.SaveStateDict(Path.Combine(dir, "model.safetensors"), state);
            PyTorchPickler.PickleStateDict(Path.Combine(dir, "weights.pth"), state);
            AssertSameState(state, CheckpointFiles.ReadStateDict(dir));
            AssertSameState(state, CheckpointFiles.ReadStateDict(Path.Combine(dir, "weights.pth")));
            using var m = OriginalLayouts.NewBlip();
            CheckpointFiles.LoadInto(m, dir, CheckpointLayout.HfBlip);
            var w = m.state_dict()["vision_model.encoder.layers.0.self_attn.qkv.weight"];
            Assert.Equal(ScalarType.Float32, w.dtype);
            Assert.True(OriginalLayouts.Same(w, state["vision_model.encoder.layers.0.self_attn.qkv.weight"].to(ScalarType.Float32)));
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void Pickles_wrapped_under_model_or_plain_read_the_same()
    {
        var state = FixtureState();
        var dir = OriginalLayouts.TempDir();
        try
        {
            PyTorchPickler.PickleStateDict(Path.Combine(dir, "pytorch_model.bin"), state);
            AssertSameState(state, CheckpointFiles.ReadStateDict(dir));
            var pth = Path.Combine(dir, "checkpoint_09.pth");
            PyTorchPickler.PickleStateDict(pth, new Hashtable { ["model"] = state, ["optimizer"] = new Hashtable { ["step"] = torch.ones(1) }, ["epoch"] = 9 });
            AssertSameState(state, CheckpointFiles.ReadStateDict(pth));
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void Strict_load_reports_missing_unexpected_and_mismatched_in_one_line()
    {
        var state = FixtureState();
        state.Remove("text_encoder.embeddings.LayerNorm.weight");
        state["text_encoder.extra.weight"] = torch.zeros(3);
        state["vision_model.post_layernorm.bias"] = torch.zeros(5);
        var dir = OriginalLayouts.TempDir();
        try
        {
            Safetensors.SaveStateDict(Path.Combine(dir, "model.safetensors"), state);
            using var m = OriginalLayouts.NewBlip();
            var e = OneLine(() => CheckpointFiles.LoadInto(m, dir, CheckpointLayout.HfBlip));
            Assert.Contains("1 missing (text_encoder.embeddings.LayerNorm.weight)", e.Message);
            Assert.Contains("1 unexpected (text_encoder.extra.weight)", e.Message);
            Assert.Contains("vision_model.post_layernorm.bias [5] vs [32]", e.Message);
            var r = CheckpointFiles.LoadInto(m, dir, (KeyMap?)null, strict: false);
            Assert.False(r.Ok);
        }
        finally { Directory.Delete(dir, true); }
    }
}
