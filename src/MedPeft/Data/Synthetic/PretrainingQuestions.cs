namespace MedPeft.Data.Synthetic;

/// <summary>
/// Instruction-style question–answer pairs about the captioned pretraining images (the separate pool, never the
/// Med-VQA images), derived from their ground truth the way LLaVA-Med derives instruction data from captions. They
/// cover only the "general" question families — modality, plane, body region and presence of findings — so the
/// pretrained model has seen the question format, while localisation, counting, size and organ questions are
/// left for fine-tuning to teach.
/// </summary>
public static class PretrainingQuestions
{
    public static readonly IReadOnlySet<string> ContentTypes = new HashSet<string> { "Modality", "Plane", "Abnormality" };

    static bool Seen(QuestionKind k) => ContentTypes.Contains(k.ContentType) || k.Family == "bodypart";

    /// <summary>Question keys (kinds) that pretraining covers.</summary>
    public static IReadOnlyList<string> SeenKinds => Questions.Catalogue.Where(Seen).Select(k => k.Key).ToList();

    /// <summary>(image path relative to the benchmark folder, question, answer), <paramref name="perImage"/> per
    /// pretraining image, balanced per kind like the Med-VQA split.</summary>
    public static List<(string Image, string Question, string Answer)> Generate(SyntheticBenchPlan plan, int perImage = 2)
    {
        var images = plan.Captions.Select((c, i) => (i, c.Study)).ToList();
        var rng = new SynthRandom(unchecked((ulong)plan.Options.Seed * 0x9E3779B97F4A7C15UL + 0x5052455452AUL));
        var questions = Questions.ForSplit("pretrain", images, perImage, 0, rng, Seen);
        return questions.Select(q => (plan.Captions[q.ImgId].Image, q.Question, q.Answer)).ToList();
    }
}
