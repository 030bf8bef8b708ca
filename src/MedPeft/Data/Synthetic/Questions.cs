namespace MedPeft.Data.Synthetic;

/// <summary>One generated Med-VQA question with its ground truth and SLAKE metadata.</summary>
/// <param name="Kind">Balance group (question type), e.g. <c>chest.nodule.present</c> or <c>modality.is.mri</c>.</param>
/// <param name="AnswerType">"CLOSED" (yes/no, or a choice offered in the question) or "OPEN", as SLAKE labels them.</param>
/// <param name="ContentType">SLAKE content type: Organ, Position, Abnormality, Modality, Size, Quantity, Plane.</param>
public sealed record SyntheticQuestion(int Qid, int ImgId, string Split, string Kind, string Question, string Answer, string AnswerType, string ContentType);

/// <summary>
/// A kind of question: its wordings, SLAKE labels and how to answer it from the ground truth
/// (null when it does not apply to a study).
/// </summary>
/// <param name="Family">At most one question of a family per image (e.g. the three "Is this a … scan?" kinds).</param>
/// <param name="Answers">How many distinct answers the kind has; the balancer aims at an even share for each.</param>
internal sealed record QuestionKind(string Key, string Family, string ContentType, string AnswerType, int Answers, string[] Templates, Func<SyntheticStudy, string?> Answer);

/// <summary>
/// The question catalogue and the balancer that picks which questions to ask about each image.
/// </summary>
/// <remarks>
/// Findings have natural prevalences (most chests have no pneumothorax), so asking every
/// question of every image would let a constant answer ("no") score well. Instead, for each
/// image the balancer picks <c>QuestionsPerImage</c> questions, preferring (kind, answer) pairs
/// whose answer is under-represented in its kind so far, and kinds asked less often. Within a
/// split every yes/no kind ends up close to 50/50 and every open kind spreads over its answers.
/// Choosing a question never depends on anything but the ground truth, so the image is still
/// needed to answer it.
/// </remarks>
internal static class Questions
{
    private const string Open = "OPEN", Closed = "CLOSED";

    public static readonly IReadOnlyList<QuestionKind> Catalogue = BuildCatalogue();

    private static string YesNo(bool value) => value ? "yes" : "no";

    private static string SideWord(Side side) => side == Side.Left ? "left" : "right";

    public static string ModalityWord(SynthModality m) => m switch
    {
        SynthModality.ChestXray => "x-ray",
        SynthModality.BrainMri => "mri",
        _ => "ct",
    };

    private static List<QuestionKind> BuildCatalogue()
    {
        var kinds = new List<QuestionKind>
        {
            // --- any image ---
            new("modality.open", "modality", "Modality", Open, 3,
                ["What modality is used to take this image?", "Which imaging modality is this?", "What kind of scan is this?"],
                s => ModalityWord(s.Modality)),
            new("plane.open", "plane", "Plane", Open, 2,
                ["In what plane is this image taken?", "What is the scanning plane of this image?", "Which plane is this image in?"],
                s => s.Modality == SynthModality.ChestXray ? "coronal plane" : "transverse plane"),
            new("bodypart.open", "bodypart", "Position", Open, 3,
                ["Which part of the body does this image belong to?", "What part of the body is shown?", "Which body region is imaged?"],
                s => s.Modality switch { SynthModality.ChestXray => "chest", SynthModality.BrainMri => "head", _ => "abdomen" }),
            new("normal.closed", "normal", "Abnormality", Closed, 2,
                ["Is this image normal?", "Does this image look normal?", "Is this a normal study?"],
                s => YesNo(s.IsNormal)),
            new("abnormality.open", "abnormality", "Abnormality", Open, 8,
                ["What abnormality is seen?", "What is the main finding in this image?", "What disease is shown in this image?"],
                s => s.Abnormalities.Count switch { 0 => "none", 1 => s.Abnormalities[0], _ => null }),
            new("organ.abnormal.open", "organ.abnormal", "Organ", Open, 5,
                ["Which organ is abnormal?", "Which organ shows an abnormality?", "What organ is affected?"],
                s => s.AbnormalOrgans.Count == 1 ? s.AbnormalOrgans[0] : null),

            // --- chest radiographs ---
            new("chest.nodule.present", "chest.nodule", "Abnormality", Closed, 2,
                ["Is there a nodule in the lung?", "Does the lung contain a nodule?", "Are there any lung nodules?"],
                s => s.Chest is { } c ? YesNo(c.Nodules > 0) : null),
            new("chest.nodule.where", "chest.nodule.where", "Position", Open, 4,
                ["Where is the nodule?", "Where is the lung nodule located?", "Which part of the lung contains the nodule?"],
                s => s.Chest is { Nodules: > 0 } c ? $"{SideWord(c.NoduleSide)} {(c.NoduleZone == LungZone.Upper ? "upper" : "lower")} lung" : null),
            new("chest.nodule.side", "chest.nodule.where", "Position", Closed, 2,
                ["Is the nodule in the left or right lung?", "Which lung has the nodule, left or right?"],
                s => s.Chest is { Nodules: > 0 } c ? SideWord(c.NoduleSide) : null),
            new("chest.nodule.count", "chest.count", "Quantity", Open, 4,
                ["How many nodules are there?", "How many nodules are in the lungs?", "How many lung nodules can be seen?"],
                s => s.Chest is { } c ? c.Nodules.ToString(System.Globalization.CultureInfo.InvariantCulture) : null),
            new("chest.effusion.present", "chest.effusion", "Abnormality", Closed, 2,
                ["Is there a pleural effusion?", "Does the patient have a pleural effusion?", "Is there fluid in the pleural space?"],
                s => s.Chest is { } c ? YesNo(c.Effusion is not null) : null),
            new("chest.effusion.side", "chest.effusion.side", "Position", Open, 2,
                ["Which side is the effusion on?", "On which side is the pleural effusion?", "Where is the pleural effusion?"],
                s => s.Chest is { Effusion: { } side } ? SideWord(side) : null),
            new("chest.cardiomegaly", "chest.heart", "Size", Closed, 2,
                ["Is the heart enlarged?", "Is there cardiomegaly?", "Does the heart look enlarged?"],
                s => s.Chest is { } c ? YesNo(c.Cardiomegaly) : null),
            new("chest.heart.size", "chest.heart", "Size", Open, 2,
                ["What is the size of the heart?", "How big is the heart?", "How is the heart size?"],
                s => s.Chest is { } c ? (c.Cardiomegaly ? "enlarged" : "normal") : null),
            new("chest.ptx.present", "chest.ptx", "Abnormality", Closed, 2,
                ["Is there a pneumothorax?", "Is there air in the pleural space?", "Does this image show a pneumothorax?"],
                s => s.Chest is { } c ? YesNo(c.Pneumothorax is not null) : null),
            new("chest.ptx.side", "chest.ptx.side", "Position", Open, 2,
                ["Which side is the pneumothorax on?", "On which side is the pneumothorax?", "Where is the pneumothorax?"],
                s => s.Chest is { Pneumothorax: { } side } ? SideWord(side) : null),

            // --- brain MRI ---
            new("brain.lesion.present", "brain.lesion", "Abnormality", Closed, 2,
                ["Is there a tumor in the brain?", "Does the brain contain a lesion?", "Is there a brain tumor?"],
                s => s.Brain is { } b ? YesNo(b.Lesions.Count > 0) : null),
            new("brain.lesion.where", "brain.where", "Position", Open, 3,
                ["Where is the tumor?", "Which hemisphere is the lesion in?", "Where is the brain lesion located?"],
                s => s.Brain is { } b && b.Lesions.Count > 0
                    ? (b.CountOn(Side.Left) > 0 && b.CountOn(Side.Right) > 0 ? "both hemispheres" : $"{SideWord(b.Lesions[0])} hemisphere")
                    : null),
            new("brain.lesion.count", "brain.count", "Quantity", Open, 3,
                ["How many lesions are in the brain?", "How many tumors are there?", "How many brain lesions can be seen?"],
                s => s.Brain is { } b ? b.Lesions.Count.ToString(System.Globalization.CultureInfo.InvariantCulture) : null),

            // --- abdominal CT ---
            new("abdomen.liver.present", "abdomen.liver", "Abnormality", Closed, 2,
                ["Is there a lesion in the liver?", "Does the liver contain a lesion?", "Is the liver abnormal?"],
                s => s.Abdomen is { } a ? YesNo(a.LiverLesions > 0) : null),
            new("abdomen.liver.count", "abdomen.count", "Quantity", Open, 3,
                ["How many lesions are in the liver?", "How many liver lesions are there?", "How many lesions does the liver contain?"],
                s => s.Abdomen is { } a ? a.LiverLesions.ToString(System.Globalization.CultureInfo.InvariantCulture) : null),
            new("abdomen.cyst.present", "abdomen.cyst", "Abnormality", Closed, 2,
                ["Is there a kidney cyst?", "Does the kidney have a cyst?", "Is there a renal cyst?"],
                s => s.Abdomen is { } a ? YesNo(a.KidneyCyst is not null) : null),
            new("abdomen.cyst.side", "abdomen.cyst.side", "Position", Open, 2,
                ["Which kidney has a cyst?", "Where is the kidney cyst?", "On which side is the renal cyst?"],
                s => s.Abdomen is { KidneyCyst: { } side } ? SideWord(side) : null),
        };

        // "Is this a … scan?" about each modality (so "yes" is not tied to one wording).
        kinds.Add(new("modality.is.xray", "modality.is", "Modality", Closed, 2,
            ["Is this an x-ray?", "Was this image taken with x-ray?", "Is this a radiograph?"],
            s => YesNo(s.Modality == SynthModality.ChestXray)));
        kinds.Add(new("modality.is.mri", "modality.is", "Modality", Closed, 2,
            ["Is this an MRI scan?", "Was this image taken with MRI?", "Is this a magnetic resonance image?"],
            s => YesNo(s.Modality == SynthModality.BrainMri)));
        kinds.Add(new("modality.is.ct", "modality.is", "Modality", Closed, 2,
            ["Is this a CT scan?", "Was this image taken with CT?", "Is this a computed tomography image?"],
            s => YesNo(s.Modality == SynthModality.AbdomenCt)));

        // "Does the picture contain …?" about each organ (SLAKE's wording).
        foreach (var organ in new[] { "lung", "heart", "brain", "liver", "kidney" })
        {
            kinds.Add(new($"organ.contains.{organ}", "organ.contains", "Organ", Closed, 2,
                [$"Does the picture contain {organ}?", $"Is the {organ} visible in this image?", $"Does this image show the {organ}?"],
                s => YesNo(s.VisibleOrgans.Contains(organ))));
        }

        // Hemisphere-specific brain questions.
        foreach (var side in new[] { Side.Left, Side.Right })
        {
            string w = SideWord(side);
            kinds.Add(new($"brain.hemisphere.{w}", "brain.hemisphere", "Position", Closed, 2,
                [$"Does the image show a lesion in the {w} hemisphere?", $"Is there a tumor in the {w} side of the brain?", $"Is the {w} hemisphere abnormal?"],
                s => s.Brain is { } b ? YesNo(b.CountOn(side) > 0) : null));
        }
        return kinds;
    }

    /// <summary>
    /// Picks and words the questions for the images of one split, in image order.
    /// <paramref name="firstQid"/> is the qid of the first question (qids are contiguous over the split files).
    /// </summary>
    public static List<SyntheticQuestion> ForSplit(string split, IReadOnlyList<(int ImgId, SyntheticStudy Study)> images, int questionsPerImage, int firstQid, SynthRandom rng,
        Func<QuestionKind, bool>? allowed = null)
    {
        var balance = new Balance();
        var result = new List<SyntheticQuestion>();
        int qid = firstQid;
        foreach (var (imgId, study) in images)
        {
            var candidates = new List<(QuestionKind Kind, string Answer)>();
            foreach (var kind in Catalogue)
                if ((allowed is null || allowed(kind)) && kind.Answer(study) is { } answer)
                    candidates.Add((kind, answer));

            var usedFamilies = new HashSet<string>();
            for (int n = 0; n < questionsPerImage; n++)
            {
                int best = -1;
                double bestScore = double.MaxValue;
                for (int i = 0; i < candidates.Count; i++)
                {
                    var (kind, answer) = candidates[i];
                    if (usedFamilies.Contains(kind.Family)) continue;
                    double score = balance.Score(kind, answer) + rng.NextDouble();
                    if (score < bestScore) (best, bestScore) = (i, score);
                }
                if (best < 0) break;
                var chosen = candidates[best];
                usedFamilies.Add(chosen.Kind.Family);
                balance.Add(chosen.Kind, chosen.Answer);
                string text = rng.Pick(chosen.Kind.Templates);
                result.Add(new SyntheticQuestion(qid++, imgId, split, chosen.Kind.Key, text, chosen.Answer, chosen.Kind.AnswerType, chosen.Kind.ContentType));
            }
        }
        return result;
    }

    /// <summary>Running answer counts per kind within one split.</summary>
    private sealed class Balance
    {
        private readonly Dictionary<string, Dictionary<string, int>> _counts = [];
        private readonly Dictionary<string, int> _totals = [];
        private int _asked;

        /// <summary>
        /// Lower is better. First term: how far above its fair share (total / number of answers)
        /// this answer's count would be after asking, in questions; it dominates, so imbalances
        /// are corrected as soon as they reach about one question. Second term: kinds that were
        /// asked more often than average wait their turn.
        /// </summary>
        public double Score(QuestionKind kind, string answer)
        {
            int total = _totals.GetValueOrDefault(kind.Key);
            int count = _counts.TryGetValue(kind.Key, out var byAnswer) ? byAnswer.GetValueOrDefault(answer) : 0;
            double over = (count + 1) - (total + 1.0) / kind.Answers;
            double mean = _totals.Count == 0 ? 0 : (double)_asked / Catalogue.Count;
            double coverage = 0.5 * total / (mean + 1);
            return 2.0 * over + coverage;
        }

        public void Add(QuestionKind kind, string answer)
        {
            if (!_counts.TryGetValue(kind.Key, out var byAnswer)) _counts[kind.Key] = byAnswer = [];
            byAnswer[answer] = byAnswer.GetValueOrDefault(answer) + 1;
            _totals[kind.Key] = _totals.GetValueOrDefault(kind.Key) + 1;
            _asked++;
        }
    }
}
