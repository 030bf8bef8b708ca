using MedPeft.Data;
using MedPeft.Data.Synthetic;
using MedPeft.Models.Blip;

namespace MedPeft.Tests;

/// <summary>A generated benchmark under ROOT/bench and a random tiny BLIP VQA folder under ROOT/model built on its
/// vocabulary — the fixture the train/eval/report CLI tests share.</summary>
public static class TinyBlipFolder
{
    public static (string Model, string Data) Create(string root, SyntheticBenchOptions options, long seed)
    {
        var data = Path.Combine(root, "bench");
        SyntheticBench.EnsureGenerated(data, options);
        var vocab = Path.Combine(root, "vocab.txt");
        BlipTokenizer.WriteVocabulary(SyntheticBench.Vocabulary(options), vocab);
        var tok = new BlipTokenizer(vocab);
        TorchRuntime.Seed(seed);
        using var model = new BlipForQuestionAnswering(BlipPresets.Tiny(tok.VocabSize, tok.DecId, tok.SepId, tok.PadId));
        BlipInit.Apply(model);
        var dir = Path.Combine(root, "model");
        BlipModelFolder.Save(model, dir, vocab);
        return (dir, data);
    }
}
