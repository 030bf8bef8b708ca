using MedPeft.Models;
using MedPeft.Tuning;
using TorchSharp;

namespace MedPeft.Experiments;

/// <summary>`medpeft merge BASE ADAPTER OUT`: applies a PEFT adapter (LORA, IA3 or LN_TUNING) to a base checkpoint folder,
/// folds it into the weights (PEFT's merge_and_unload) and writes a plain checkpoint folder: the base's other files
/// (config.json, tokenizer files, …) copied, model.safetensors replaced. Written to a temporary sibling first.</summary>
public static class AdapterMerge
{
    public static void Run(string baseDir, string adapterDir, string outDir)
    {
        if (!Directory.Exists(baseDir)) throw new MedPeftException($"{baseDir}: model folder not found");
        var (model, _) = Presets.LoadFolder(baseDir, torch.CPU);
        using var _m = model;
        var (method, _) = TuningMethods.LoadAdapter(model, adapterDir);
        try { method.Finalize(model, FinalizeMode.Merge); }   // prompt learning has no merged form: refused in one line
        catch (MedPeftException e) { throw new MedPeftException($"{adapterDir}: {e.Message}"); }
        var full = Path.GetFullPath(outDir).TrimEnd('/');
        var tmp = full + $".tmp-{Environment.ProcessId}";
        if (Directory.Exists(tmp)) Directory.Delete(tmp, true);
        Directory.CreateDirectory(tmp);
        foreach (var file in Directory.EnumerateFiles(baseDir))
        {
            var name = Path.GetFileName(file);
            if (name.EndsWith(".safetensors") || name.EndsWith(".bin") || name.EndsWith(".pth") || name.EndsWith(".index.json")) continue;
            File.Copy(file, Path.Combine(tmp, name));
        }
        Checkpoint.SaveSafetensors(model, Path.Combine(tmp, "model.safetensors"));
        if (Directory.Exists(full)) Directory.Delete(full, true);
        Directory.Move(tmp, full);
    }
}
