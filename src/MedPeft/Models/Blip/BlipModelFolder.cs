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
    public static void Save(BlipForQuestionAnswering model, string dir, string vocabPath, IReadOnlyDictionary<string, string>? extraFiles = null)
    {
        var full = Path.GetFullPath(dir);
        var tmp = full.TrimEnd('/') + $".tmp-{Environment.ProcessId}";
        if (Directory.Exists(tmp)) Directory.Delete(tmp, true);
        Directory.CreateDirectory(tmp);
        File.WriteAllText(Path.Combine(tmp, ConfigFile), model.Config.ToJson());
        Checkpoint.SaveSafetensors(model, Path.Combine(tmp, WeightsFile));
        File.Copy(vocabPath, Path.Combine(tmp, VocabFile));
        foreach (var (name, text) in extraFiles ?? new Dictionary<string, string>()) File.WriteAllText(Path.Combine(tmp, name), text);
        if (Directory.Exists(full)) Directory.Delete(full, true);
        Directory.Move(tmp, full);
    }

    public static BlipConfig LoadConfig(string dir) => BlipConfig.Load(Path.Combine(dir, ConfigFile));

    public static BlipForQuestionAnswering Load(string dir, Device device)
    {
        if (!Directory.Exists(dir)) throw new MedPeftException($"{dir}: model folder not found");
        var config = LoadConfig(dir);
        var model = ModelUtils.On(device, () => new BlipForQuestionAnswering(config));
        Checkpoint.LoadSafetensors(model, Path.Combine(dir, WeightsFile));
        model.eval();
        return model;
    }

    public static BlipTokenizer LoadTokenizer(string dir) => new(Path.Combine(dir, VocabFile));
}
