using System.Text.Json.Nodes;
using MedPeft.Data;

namespace MedPeft.Evaluation;

/// <summary>JSONL of {"id","question","answer","prediction","answer_type"?}: predictions from any system, for
/// `medpeft score vqa`; also what `medpeft eval --predictions` writes.</summary>
public static class VqaPredictionsFile
{
    public static List<VqaPrediction> Load(string path)
    {
        var list = JsonLines.Read(path).Select((l, i) => new VqaPrediction(l.String("id", required: false) ?? $"{i}",
            l.String("question", required: false) ?? "", l.String("answer")!, l.String("prediction")!, l.String("answer_type", required: false))).ToList();
        return list.Count > 0 ? list : throw new MedPeftException($"{path}: no predictions");
    }

    public static void Save(string path, IEnumerable<VqaPrediction> predictions) =>
        AtomicFile.WriteAllText(path, string.Concat(predictions.Select(p => new JsonObject
        {
            ["id"] = p.Id, ["question"] = p.Question, ["answer"] = p.Answer, ["prediction"] = p.Prediction, ["answer_type"] = p.AnswerType,
        }.ToJsonString() + "\n")));
}
