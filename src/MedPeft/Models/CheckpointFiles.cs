using System.Collections;
using System.Text;
using System.Text.Json;
using TorchSharp;
using TorchSharp.PyBridge;
using static TorchSharp.torch;

namespace MedPeft.Models;

/// <summary>Reads checkpoints as they are published: one <c>model.safetensors</c>, sharded safetensors behind
/// <c>model.safetensors.index.json</c>, <c>pytorch_model.bin</c> (+ <c>pytorch_model.bin.index.json</c>) and
/// <c>*.pth</c> / <c>*.pt</c> torch.save pickles (the original BLIP/MISS files wrap the state dict under "model").
/// Any tensor dtype the file holds (F32, F16, BF16, …) is read as is; loading into a module converts to the
/// parameter's dtype.
///
/// Memory: <see cref="LoadInto"/> is lean. Safetensors are parsed here (header, then one tensor at a time, read
/// straight from the file and copied into its parameter before the next is read), so peak memory is the model plus
/// one tensor. Pickles are read one shard at a time (TorchSharp.PyBridge has no lazy public reader), so peak memory
/// is the model plus one shard. <see cref="ReadStateDict"/> returns every tensor at once and therefore holds one
/// full copy of the checkpoint; use it for small models and inspection only.</summary>
public static class CheckpointFiles
{
    public const string SafetensorsFile = "model.safetensors";
    public const string SafetensorsIndexFile = "model.safetensors.index.json";
    public const string PickleFile = "pytorch_model.bin";
    public const string PickleIndexFile = "pytorch_model.bin.index.json";

    // ------------------------------------------------------------------ locating files

    /// <summary>The weight files that make up a checkpoint, in load order. <paramref name="dirOrFile"/> is a weight
    /// file, an <c>*.index.json</c>, or a folder (searched for, in order: model.safetensors.index.json,
    /// model.safetensors, pytorch_model.bin.index.json, pytorch_model.bin, then a single *.safetensors or
    /// *.pth/*.pt/*.bin file). Every shard named by an index must exist.</summary>
    public static IReadOnlyList<string> WeightFiles(string dirOrFile)
    {
        if (File.Exists(dirOrFile))
            return dirOrFile.EndsWith(".index.json", StringComparison.Ordinal) ? ReadIndex(dirOrFile).Shards : [dirOrFile];
        if (!Directory.Exists(dirOrFile)) throw new MedPeftException($"{dirOrFile}: checkpoint file or folder not found");
        string P(string name) => Path.Combine(dirOrFile, name);
        if (File.Exists(P(SafetensorsIndexFile))) return ReadIndex(P(SafetensorsIndexFile)).Shards;
        if (File.Exists(P(SafetensorsFile))) return [P(SafetensorsFile)];
        if (File.Exists(P(PickleIndexFile))) return ReadIndex(P(PickleIndexFile)).Shards;
        if (File.Exists(P(PickleFile))) return [P(PickleFile)];
        foreach (var patterns in new[] { new[] { "*.safetensors" }, new[] { "*.pth", "*.pt", "*.bin" } })
        {
            var found = patterns.SelectMany(p => Directory.GetFiles(dirOrFile, p)).OrderBy(f => f, StringComparer.Ordinal).ToList();
            if (found.Count == 1) return found;
            if (found.Count > 1)
                throw new MedPeftException($"{dirOrFile}: {found.Count} candidate weight files and no index ({string.Join(", ", found.Take(4).Select(Path.GetFileName))}); pass the file to load");
        }
        throw new MedPeftException($"{dirOrFile}: no weights found ({SafetensorsFile}, {SafetensorsIndexFile}, {PickleFile} or *.pth)");
    }

    /// <summary>A shard index (HF's *.index.json): the distinct shard files in first-use order and the tensor → shard
    /// map, with every shard checked to exist.</summary>
    public sealed record ShardIndex(string Path, IReadOnlyList<string> Shards, IReadOnlyDictionary<string, string> WeightMap);

    public static ShardIndex ReadIndex(string indexPath)
    {
        if (!File.Exists(indexPath)) throw new MedPeftException($"{indexPath}: index file not found");
        Dictionary<string, string> map;
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(indexPath));
            if (!doc.RootElement.TryGetProperty("weight_map", out var wm) || wm.ValueKind != JsonValueKind.Object)
                throw new MedPeftException($"{indexPath}: not a shard index (no \"weight_map\" object)");
            map = wm.EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString() ?? throw new MedPeftException($"{indexPath}: weight_map[\"{p.Name}\"] is not a file name"));
        }
        catch (JsonException e) { throw new MedPeftException($"{indexPath}: invalid JSON ({e.Message.Split('\n')[0]})"); }
        catch (InvalidOperationException e) { throw new MedPeftException($"{indexPath}: weight_map values must be file names ({e.Message})"); }
        if (map.Count == 0) throw new MedPeftException($"{indexPath}: weight_map is empty");
        var dir = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(indexPath))!;
        var shards = new List<string>();
        foreach (var group in map.GroupBy(kv => kv.Value))
        {
            var file = System.IO.Path.Combine(dir, group.Key);
            if (!File.Exists(file))
                throw new MedPeftException($"{indexPath}: shard \"{group.Key}\" (holding {group.Count()} tensors, e.g. {group.First().Key}) not found");
            shards.Add(file);
        }
        return new ShardIndex(indexPath, shards, map.ToDictionary(kv => kv.Key, kv => System.IO.Path.Combine(dir, kv.Value)));
    }

    static ShardIndex? IndexOf(string dirOrFile)
    {
        if (File.Exists(dirOrFile)) return dirOrFile.EndsWith(".index.json", StringComparison.Ordinal) ? ReadIndex(dirOrFile) : null;
        foreach (var name in new[] { SafetensorsIndexFile, SafetensorsFile, PickleIndexFile, PickleFile })
        {
            var p = Path.Combine(dirOrFile, name);
            if (File.Exists(p)) return name.EndsWith(".index.json", StringComparison.Ordinal) ? ReadIndex(p) : null;
        }
        return null;
    }

    public static bool IsSafetensors(string file) => file.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase);

    // ------------------------------------------------------------------ safetensors, parsed here

    /// <summary>One tensor's entry in a safetensors header: dtype, shape and byte range within the data section.</summary>
    public sealed record SafetensorsEntry(string Name, ScalarType DType, long[] Shape, long Begin, long End);

    /// <summary>Parses and validates a safetensors header (8-byte little-endian length + JSON) without reading any
    /// tensor: known dtypes, byte ranges inside the file and matching the shape. Errors are one line naming the file.</summary>
    public static (IReadOnlyList<SafetensorsEntry> Entries, long DataStart) ReadSafetensorsHeader(string file)
    {
        if (!File.Exists(file)) throw new MedPeftException($"{file}: file not found");
        using var fs = File.OpenRead(file);
        return ReadSafetensorsHeader(fs, file);
    }

    static (IReadOnlyList<SafetensorsEntry>, long) ReadSafetensorsHeader(FileStream fs, string file)
    {
        long size = fs.Length;
        Span<byte> lenBytes = stackalloc byte[8];
        if (size < 8 || fs.Read(lenBytes) != 8) throw new MedPeftException($"{file}: bad safetensors header (file shorter than 8 bytes)");
        ulong len = BitConverter.ToUInt64(lenBytes);
        if (len == 0 || len > (ulong)(size - 8) || len > 100_000_000)
            throw new MedPeftException($"{file}: bad safetensors header (header length {len} does not fit the {size}-byte file)");
        var json = new byte[len];
        fs.ReadExactly(json);
        long dataStart = 8 + (long)len, dataSize = size - dataStart;
        var entries = new List<SafetensorsEntry>();
        try
        {
            using var doc = JsonDocument.Parse(Encoding.UTF8.GetString(json).TrimEnd(' ', '\0'));
            foreach (var p in doc.RootElement.EnumerateObject())
            {
                if (p.Name == "__metadata__") continue;
                var dtypeName = p.Value.GetProperty("dtype").GetString() ?? "";
                var dtype = DType(dtypeName) ?? throw new MedPeftException($"{file}: tensor \"{p.Name}\" has unsupported dtype {dtypeName}");
                var shape = p.Value.GetProperty("shape").EnumerateArray().Select(e => e.GetInt64()).ToArray();
                var offs = p.Value.GetProperty("data_offsets").EnumerateArray().Select(e => e.GetInt64()).ToArray();
                if (offs.Length != 2 || offs[0] < 0 || offs[1] < offs[0] || offs[1] > dataSize)
                    throw new MedPeftException($"{file}: tensor \"{p.Name}\" data_offsets [{string.Join(",", offs)}] outside the {dataSize}-byte data section (truncated file?)");
                long bytes = shape.Aggregate(1L, (a, b) => a * b) * ElementSize(dtype);
                if (bytes != offs[1] - offs[0])
                    throw new MedPeftException($"{file}: tensor \"{p.Name}\" [{string.Join(",", shape)}] {dtypeName} needs {bytes} bytes but data_offsets span {offs[1] - offs[0]}");
                entries.Add(new SafetensorsEntry(p.Name, dtype, shape, offs[0], offs[1]));
            }
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException or DecoderFallbackException)
        {
            throw new MedPeftException($"{file}: bad safetensors header ({e.Message.Split('\n')[0]})");
        }
        return (entries, dataStart);
    }

    static ScalarType? DType(string name) => name switch
    {
        "F64" => ScalarType.Float64, "F32" => ScalarType.Float32, "F16" => ScalarType.Float16, "BF16" => ScalarType.BFloat16,
        "I64" => ScalarType.Int64, "I32" => ScalarType.Int32, "I16" => ScalarType.Int16, "I8" => ScalarType.Int8,
        "U8" => ScalarType.Byte, "BOOL" => ScalarType.Bool, _ => null,
    };

    static long ElementSize(ScalarType t) => t switch
    {
        ScalarType.Float64 or ScalarType.Int64 => 8,
        ScalarType.Float32 or ScalarType.Int32 => 4,
        ScalarType.Float16 or ScalarType.BFloat16 or ScalarType.Int16 => 2,
        _ => 1,
    };

    /// <summary>Streams a safetensors file one tensor at a time (each a fresh CPU tensor the caller owns).</summary>
    public static IEnumerable<(string Name, Tensor Tensor)> StreamSafetensors(string file)
    {
        if (!File.Exists(file)) throw new MedPeftException($"{file}: file not found");
        using var fs = File.OpenRead(file);
        var (entries, dataStart) = ReadSafetensorsHeader(fs, file);
        foreach (var e in entries.OrderBy(e => e.Begin))
        {
            var t = torch.empty(e.Shape, e.DType, device: torch.CPU);
            try
            {
                fs.Position = dataStart + e.Begin;
                if (e.End > e.Begin) t.ReadBytesFromStream(fs);
            }
            catch (Exception ex) when (ex is not MedPeftException)
            {
                t.Dispose();
                throw new MedPeftException($"{file}: could not read tensor \"{e.Name}\" ({ex.Message})");
            }
            yield return (e.Name, t);
        }
    }

    // ------------------------------------------------------------------ pickles

    /// <summary>Reads a torch.save file (zip format, torch ≥ 1.6) and returns its state dict: the top-level dict, or the
    /// dict under "model" / "state_dict" / "module" when the file wraps it (original BLIP/MISS: {"model": …,
    /// "optimizer": …, "config": …, "epoch": …}). Non-tensor entries are ignored.</summary>
    public static Dictionary<string, Tensor> ReadPickle(string file)
    {
        if (!File.Exists(file)) throw new MedPeftException($"{file}: file not found");
        Hashtable root;
        try { root = PyTorchUnpickler.UnpickleStateDict(file); }
        catch (NotImplementedException e) when (e.Message.Contains("old PyTorch format"))
        { throw new MedPeftException($"{file}: legacy (pre-1.6, non-zip) torch.save format is not supported; re-save it with a current torch"); }
        catch (NotImplementedException e) when (e.Message.Contains("entire model"))
        { throw new MedPeftException($"{file}: holds a pickled nn.Module, not a state dict; re-save with torch.save(model.state_dict(), …)"); }
        catch (Exception e) when (e is not MedPeftException)
        { throw new MedPeftException($"{file}: not a readable torch.save file ({e.GetType().Name}: {e.Message.Split('\n')[0]})"); }

        var dict = root;
        foreach (var wrapper in new[] { "model", "state_dict", "module" })
            if (root[wrapper] is Hashtable inner && !root.Values.OfType<Tensor>().Any()) { dict = inner; break; }
        var result = new Dictionary<string, Tensor>();
        foreach (DictionaryEntry kv in dict)
            if (kv.Key is string k && kv.Value is Tensor t) result[k] = t;
        // Tensors outside the chosen dict (optimizer state of a training checkpoint) are freed right away.
        if (!ReferenceEquals(dict, root)) DisposeTensors(root, dict);
        if (result.Count == 0) throw new MedPeftException($"{file}: no tensors found (expected a state dict, optionally under \"model\")");
        return result;
    }

    static void DisposeTensors(object? o, Hashtable keep)
    {
        switch (o)
        {
            case Tensor t: t.Dispose(); break;
            case Hashtable h when !ReferenceEquals(h, keep): foreach (DictionaryEntry e in h) DisposeTensors(e.Value, keep); break;
            case IList l: foreach (var x in l) DisposeTensors(x, keep); break;
        }
    }

    // ------------------------------------------------------------------ whole state dicts

    /// <summary>All tensors of one weight file (safetensors or pickle).</summary>
    public static Dictionary<string, Tensor> ReadFile(string file)
    {
        if (!IsSafetensors(file)) return ReadPickle(file);
        var d = new Dictionary<string, Tensor>();
        foreach (var (n, t) in StreamSafetensors(file)) d[n] = t;
        return d;
    }

    /// <summary>Every tensor of a checkpoint (all shards merged). Holds the full checkpoint in memory; prefer
    /// <see cref="LoadInto"/> for large models. A tensor present in two shards is an error.</summary>
    public static Dictionary<string, Tensor> ReadStateDict(string dirOrFile)
    {
        var all = new Dictionary<string, Tensor>();
        try
        {
            foreach (var file in WeightFiles(dirOrFile))
                foreach (var (k, t) in ReadFile(file))
                {
                    if (!all.TryAdd(k, t)) { t.Dispose(); throw new MedPeftException($"{file}: tensor \"{k}\" also appears in an earlier shard"); }
                }
        }
        catch { foreach (var t in all.Values) t.Dispose(); throw; }
        return all;
    }

    /// <summary>The tensor names of a checkpoint. Cheap for safetensors (headers only) and shard indexes (the weight
    /// map); a pickle without an index must be read in full.</summary>
    public static IReadOnlyList<string> ReadKeys(string dirOrFile)
    {
        var index = IndexOf(dirOrFile);
        if (index is not null) return index.WeightMap.Keys.ToList();
        var keys = new List<string>();
        foreach (var file in WeightFiles(dirOrFile))
        {
            if (IsSafetensors(file)) keys.AddRange(ReadSafetensorsHeader(file).Entries.Select(e => e.Name));
            else { var d = ReadPickle(file); keys.AddRange(d.Keys); foreach (var t in d.Values) t.Dispose(); }
        }
        return keys;
    }

    // ------------------------------------------------------------------ loading into a module

    /// <summary>Loads a checkpoint into <paramref name="module"/> in place, file by file and (for safetensors) tensor
    /// by tensor, converting dtypes. <paramref name="target"/> names the module's key layout (HfBlip or HfLlava): the
    /// checkpoint's layout is detected from its keys and renamed through <see cref="KeyMapping"/>; null loads names as
    /// they are. Strict: throws one line listing missing, unexpected and shape-mismatched keys (unexpected ones are
    /// named as in the checkpoint). Tied parameters count as loaded when any of their names is. Each shard listed in
    /// an index must hold the tensors the index assigns to it.</summary>
    public static LoadReport LoadInto(nn.Module module, string dirOrFile, CheckpointLayout? target = null, bool strict = true)
    {
        var files = WeightFiles(dirOrFile);
        var index = IndexOf(dirOrFile);
        if (target is null) return LoadInto(module, files, null, index, dirOrFile, strict);
        if (index is null && files.Count == 1 && !IsSafetensors(files[0]))
        {
            // A lone pickle has no header to list its keys: read it once, map its keys, load from memory.
            var state = ReadPickle(files[0]);
            var pickleMap = KeyMapping.ToHf(state.Keys.ToList(), target.Value, files[0]);
            return LoadInto(module, files, pickleMap, null, dirOrFile, strict, state);
        }
        var map = KeyMapping.ToHf(ReadKeys(dirOrFile).ToList(), target.Value, dirOrFile);
        return LoadInto(module, files, map, index, dirOrFile, strict);
    }

    /// <summary>As <see cref="LoadInto(nn.Module, string, CheckpointLayout?, bool)"/> with an explicit key map (null =
    /// names as they are).</summary>
    public static LoadReport LoadInto(nn.Module module, string dirOrFile, KeyMap? map, bool strict = true) =>
        LoadInto(module, WeightFiles(dirOrFile), map, IndexOf(dirOrFile), dirOrFile, strict);

    static LoadReport LoadInto(nn.Module module, IReadOnlyList<string> files, KeyMap? map, ShardIndex? index, string source, bool strict,
                               Dictionary<string, Tensor>? preloaded = null)
    {
        var own = module.state_dict();
        var groupOf = own.ToDictionary(kv => kv.Key, kv => kv.Value.Handle);
        var loaded = new HashSet<IntPtr>();   // present in the checkpoint (copied, or reported as shape-mismatched)
        var unexpected = new List<string>();
        var mismatched = new List<string>();
        var seen = new HashSet<string>();
        var dropped = map?.Dropped.ToHashSet();
        using (torch.no_grad())
        {
            foreach (var file in files)
            {
                var tensors = IsSafetensors(file) ? StreamSafetensors(file) : (preloaded ?? ReadPickle(file)).Select(kv => (kv.Key, kv.Value));
                var inFile = new HashSet<string>();
                foreach (var (name, tensor) in tensors)
                {
                    using var _ = tensor;
                    inFile.Add(name);
                    if (!seen.Add(name)) throw new MedPeftException($"{file}: tensor \"{name}\" also appears in an earlier shard");
                    var targets = map is null ? [name] : map.TargetsOf(name).ToList();
                    if (map is not null && targets.Count == 0 && !dropped!.Contains(name)) targets.Add(name);
                    foreach (var t in targets)
                    {
                        if (!own.TryGetValue(t, out var p)) { unexpected.Add(t == name ? name : $"{name} (as {t})"); continue; }
                        if (!tensor.shape.SequenceEqual(p.shape)) { mismatched.Add($"{t} {Shape(tensor)} vs {Shape(p)}"); loaded.Add(groupOf[t]); continue; }
                        p.copy_(tensor);   // copy_ converts dtype (F16/BF16 → the parameter's) and device
                        loaded.Add(groupOf[t]);
                    }
                }
                if (index is not null)
                {
                    var expected = index.WeightMap.Where(kv => kv.Value == file && !inFile.Contains(kv.Key)).Select(kv => kv.Key).ToList();
                    if (expected.Count > 0)
                        throw new MedPeftException($"{file}: {expected.Count} tensors the index assigns to this shard are missing from it (e.g. {expected[0]})");
                }
            }
        }
        var missing = own.Where(kv => !loaded.Contains(kv.Value.Handle)).Select(kv => kv.Key).ToList();
        var report = new LoadReport(missing, unexpected, mismatched);
        if (strict && !report.Ok) throw new MedPeftException(report.Describe(source));
        return report;
    }

    static string Shape(Tensor t) => "[" + string.Join(",", t.shape) + "]";
}
