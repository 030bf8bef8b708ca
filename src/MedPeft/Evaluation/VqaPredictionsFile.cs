using System.Text.Json;
using System.Text.Json.Nodes;

namespace MedPeft.Evaluation;

/// <summary>JSONL of {"id","question","answer","prediction","answer_type"?}: predictions from any system, for
/// `medpeft score vqa`; also what `medpeft eval --predictions` writes.</summary>
public static class VqaPredictionsFile
{
    public static List<VqaPrediction> Load(string path)
    {
        if (!File.Exists(path)) throw new MedPeftException($"{path}: file not found");
        var list = new List<VqaPrediction>();
        int line = 0;
        foreach (var text in File.ReadLines(path))
        {
            line++;
            if (string.IsNullOrWhiteSpace(text)) continue;
            JsonObject obj;
            try { obj = JsonNode.Parse(text) as JsonObject ?? throw new MedPeftException($"{path}: line {line}: expected a JSON object"); }
            catch (JsonException e) { throw new MedPeftException($"{path}: line {line}: invalid JSON ({e.Message.Split('\n')[0]})"); }
            string Field(string name, bool required = true)
            {
                var node = obj[name];
                if (node is null) return required ? throw new MedPeftException($"{path}: line {line}: field \"{name}\" missing") : null!;
                return node.GetValueKind() switch
                {
                    JsonValueKind.String => node.GetValue<string>(),
                    JsonValueKind.Number => node.ToJsonString(),   // VQA-RAD has integer answers
                    JsonValueKind.Null when !required => null!,
                    _ => throw new MedPeftException($"{path}: line {line}: field \"{name}\" must be a string"),
                };
            }
            list.Add(new VqaPrediction(Field("id", required: false) ?? $"{list.Count}", Field("question", required: false) ?? "",
                Field("answer"), Field("prediction"), Field("answer_type", required: false)));
        }
        if (list.Count == 0) throw new MedPeftException($"{path}: no predictions");
        return list;
    }

    public static void Save(string path, IEnumerable<VqaPrediction> predictions) =>
        AtomicFile.WriteAllText(path, string.Concat(predictions.Select(p => new JsonObject
        {
            ["id"] = p.Id, ["question"] = p.Question, ["answer"] = p.Answer, ["prediction"] = p.Prediction, ["answer_type"] = p.AnswerType,
        }.ToJsonString() + "\n")));
}
