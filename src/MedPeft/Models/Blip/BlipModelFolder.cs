using MedPeft.Data;
using TorchSharp;
using static TorchSharp.torch;

namespace MedPeft.Models.Blip;

/// <summary>A BLIP checkpoint folder in Hugging Face's layout: config.json, model.safetensors and the tokenizer's
/// vocab.txt. MedPeft writes its own models the same way, so they load in transformers and vice versa.</summary>
public static class BlipModelFolder
{
    public const string ConfigFile = "config.json";
    public const string WeightsFile = "model.safetensors";
    public const string VocabFile = "vocab.txt";

    public static bool IsModelFolder(string dir) => File.Exists(Path.Combine(dir, ConfigFile)) && File.Exists(Path.Combine(dir, WeightsFile));

    /// <summary>Writes into a temporary sibling folder and renames it into place: a crash never leaves a half-written
    /// model folder behind.</summary>
    public static void Save(BlipForQuestionAnswering model, string dir, string vocabPath, IReadOnlyDictionary<string, string>? extraFiles = null) =>
        Save(model, model.Config.ToJson(), dir, vocabPath, extraFiles);

    /// <summary>A captioning / report model: the config says BlipForConditionalGeneration.</summary>
    public static void Save(BlipForConditionalGeneration model, string dir, string vocabPath, IReadOnlyDictionary<string, string>? extraFiles = null)
    {
        var config = BlipConfig.FromJson(model.Config.ToJson(), dir);
        config.Architectures = ["BlipForConditionalGeneration"];
        Save(model, config.ToJson(), dir, vocabPath, extraFiles);
    }

    static void Save(nn.Module model, string configJson, string dir, string vocabPath, IReadOnlyDictionary<string, string>? extraFiles)
    {
        var full = Path.GetFullPath(dir);
        var tmp = full.TrimEnd('/') + $".tmp-{Environment.ProcessId}";
        if (Directory.Exists(tmp)) Directory.Delete(tmp, true);
        Directory.CreateDirectory(tmp);
        File.WriteAllText(Path.Combine(tmp, ConfigFile), configJson);
        Checkpoint.SaveSafetensors(model, Path.Combine(tmp, WeightsFile));
        File.Copy(vocabPath, Path.Combine(tmp, VocabFile));
        foreach (var (name, text) in extraFiles ?? new Dictionary<string, string>()) File.WriteAllText(Path.Combine(tmp, name), text);
        if (Directory.Exists(full)) Directory.Delete(full, true);
        Directory.Move(tmp, full);
    }

    public static BlipConfig LoadConfig(string dir) => BlipConfig.Load(Path.Combine(dir, ConfigFile));

    /// <summary>Loads a VQA folder, tensor by tensor from its safetensors (never a second copy of the model), into a
    /// model built in <paramref name="dtype"/> (null = fp32).</summary>
    public static BlipForQuestionAnswering Load(string dir, Device device, ScalarType? dtype = null)
    {
        if (!Directory.Exists(dir)) throw new MedPeftException($"{dir}: model folder not found");
        var config = LoadConfig(dir);
        var model = ModelUtils.On(device, dtype, () => new BlipForQuestionAnswering(config));
        CheckpointFiles.LoadInto(model, Path.Combine(dir, WeightsFile), map: null);
        model.eval();
        return model;
    }

    /// <summary>A BlipForConditionalGeneration from a captioning folder or from a VQA folder (BlipForQuestionAnswering:
    /// vision_model and text_decoder are shared, text_encoder has no place in a captioning model and is dropped —
    /// reported, never silent). Anything else missing or extra is an error. Streamed tensor by tensor, in
    /// <paramref name="dtype"/> (null = fp32).</summary>
    public static (BlipForConditionalGeneration Model, CaptioningLoad Report) LoadCaptioning(string dir, Device device, ScalarType? dtype = null)
    {
        if (!Directory.Exists(dir)) throw new MedPeftException($"{dir}: model folder not found");
        var config = LoadConfig(dir);
        var path = Path.Combine(dir, WeightsFile);
        var entries = CheckpointFiles.ReadSafetensorsHeader(path).Entries;
        var dropped = entries.Where(e => e.Name.StartsWith("text_encoder.", StringComparison.Ordinal)).OrderBy(e => e.Name, StringComparer.Ordinal).ToList();
        long droppedParams = dropped.Sum(e => e.Shape.Aggregate(1L, (a, b) => a * b));
        var droppedNames = dropped.Select(e => e.Name).ToList();
        var kept = entries.Select(e => e.Name).Except(droppedNames).ToList();
        var map = KeyMap.Identity(kept) with { Dropped = droppedNames };
        var model = ModelUtils.On(device, dtype, () => new BlipForConditionalGeneration(config));
        try { CheckpointFiles.LoadInto(model, path, map); }
        catch { model.Dispose(); throw; }
        model.eval();
        return (model, new CaptioningLoad(config.Architectures?.FirstOrDefault() ?? "unknown", droppedNames, droppedParams));
    }

    public static BlipTokenizer LoadTokenizer(string dir) => new(Path.Combine(dir, VocabFile));
}

/// <summary>What loading a captioning model took from its folder: the folder's architecture and the tensors dropped
/// (a VQA folder's text_encoder).</summary>
public sealed record CaptioningLoad(string SourceArchitecture, IReadOnlyList<string> DroppedTensors, long DroppedParameters)
{
    public string Describe() => DroppedTensors.Count == 0
        ? $"loaded a {SourceArchitecture} checkpoint as BlipForConditionalGeneration; nothing dropped"
        : $"loaded a {SourceArchitecture} checkpoint as BlipForConditionalGeneration: vision_model and text_decoder kept, " +
          $"{DroppedTensors.Count} text_encoder tensors ({DroppedParameters:N0} parameters) dropped (a captioning model has no text encoder)";
}
