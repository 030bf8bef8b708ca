using TorchSharp;
using TorchSharp.PyBridge;
using static TorchSharp.torch;

namespace MedPeft.Models;

/// <summary>What a strict load found wrong. Tied names (one tensor under two names) count as present when any of
/// their names is in the checkpoint.</summary>
public sealed record LoadReport(IReadOnlyList<string> Missing, IReadOnlyList<string> Unexpected, IReadOnlyList<string> ShapeMismatched)
{
    public bool Ok => Missing.Count == 0 && Unexpected.Count == 0 && ShapeMismatched.Count == 0;

    public string Describe(string source, int max = 5)
    {
        string List(string what, IReadOnlyList<string> names) =>
            names.Count == 0 ? "" : $" {names.Count} {what} ({string.Join(", ", names.Take(max))}{(names.Count > max ? ", …" : "")});";
        return $"{source}:{List("missing", Missing)}{List("unexpected", Unexpected)}{List("shape-mismatched", ShapeMismatched)}".TrimEnd(';');
    }
}

/// <summary>safetensors state dicts in and out of a module, by HF parameter name.</summary>
public static class Checkpoint
{
    public static Dictionary<string, Tensor> ReadSafetensors(string path)
    {
        if (!File.Exists(path)) throw new MedPeftException($"{path}: file not found");
        try { return Safetensors.LoadStateDict(path); }
        catch (Exception e) when (e is not MedPeftException) { throw new MedPeftException($"{path}: not a readable safetensors file ({e.Message})"); }
    }

    /// <summary>Copies matching tensors into the module's parameters in place (dtype converted). Strict: throws a
    /// one-line error listing missing, unexpected and shape-mismatched keys.</summary>
    public static LoadReport Load(nn.Module module, IReadOnlyDictionary<string, Tensor> state, string source, bool strict = true)
    {
        var own = module.state_dict();
        var groups = own.GroupBy(kv => kv.Value.Handle).ToList();
        var missing = new List<string>();
        var mismatched = new List<string>();
        using (torch.no_grad())
        {
            foreach (var g in groups)
            {
                var present = g.FirstOrDefault(kv => state.ContainsKey(kv.Key));
                if (present.Key is null) { missing.AddRange(g.Select(kv => kv.Key)); continue; }
                var src = state[present.Key];
                if (!src.shape.SequenceEqual(present.Value.shape)) { mismatched.Add($"{present.Key} {Shape(src)} vs {Shape(present.Value)}"); continue; }
                present.Value.copy_(src.to(present.Value.dtype));
            }
        }
        var unexpected = state.Keys.Where(k => !own.ContainsKey(k)).ToList();
        var report = new LoadReport(missing, unexpected, mismatched);
        if (strict && !report.Ok) throw new MedPeftException(report.Describe(source));
        return report;
    }

    public static LoadReport LoadSafetensors(nn.Module module, string path, bool strict = true)
    {
        var state = ReadSafetensors(path);
        try { return Load(module, state, path, strict); }
        finally { foreach (var t in state.Values) t.Dispose(); }
    }

    /// <summary>Writes tensors to a temporary file and renames it into place, so a crash never leaves a torn file.</summary>
    public static void SaveSafetensors(IEnumerable<(string Name, Tensor Tensor)> tensors, string path)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        var dict = tensors.ToDictionary(t => t.Name, t => t.Tensor.detach().cpu().contiguous());
        var tmp = path + $".tmp-{Environment.ProcessId}";
        Safetensors.SaveStateDict(tmp, dict);
        AtomicFile.Commit(tmp, path);
    }

    public static void SaveSafetensors(nn.Module module, string path) =>
        SaveSafetensors(module.state_dict().Select(kv => (kv.Key, kv.Value)), path);

    static string Shape(Tensor t) => "[" + string.Join(",", t.shape) + "]";
}
