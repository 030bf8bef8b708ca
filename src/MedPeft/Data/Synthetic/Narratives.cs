namespace MedPeft.Data.Synthetic;

/// <summary>
/// Free text about a study: short lower-case captions for pretraining (statements, never
/// questions) and IU-Xray-style chest reports. Every finding, its side, zone and count, the
/// modality and the organ are put into words, with several wordings each, so a captioning
/// model has to look at the image to say them.
/// </summary>
internal static class Narratives
{
    private static readonly string[] Numbers = ["no", "one", "two", "three", "four"];

    private static string Side(Side s) => s == Synthetic.Side.Left ? "left" : "right";

    private static string Zone(LungZone z) => z == LungZone.Upper ? "upper" : "lower";

    private static string Capitalise(string s) => s.Length == 0 ? s : char.ToUpperInvariant(s[0]) + s[1..];

    // ------------------------------------------------------------------ captions

    /// <summary>A one- to four-sentence lower-case caption, e.g. "chest x-ray. two nodules in the right upper lung. the heart is enlarged. no effusion."</summary>
    public static string Caption(SyntheticStudy study, SynthRandom rng)
    {
        (string modality, List<string> findings, List<string> negatives) = study.Modality switch
        {
            SynthModality.ChestXray => ChestPhrases(study.Chest!, rng),
            SynthModality.BrainMri => BrainPhrases(study.Brain!, rng),
            _ => AbdomenPhrases(study.Abdomen!, rng),
        };
        // Keep captions short: at most two negative statements.
        rng.Shuffle(negatives);
        if (negatives.Count > 2) negatives.RemoveRange(2, negatives.Count - 2);

        switch (rng.Next(3))
        {
            case 0: // "chest x-ray. finding. finding. negative."
                return string.Join(". ", new[] { modality }.Concat(findings).Concat(negatives)) + ".";
            case 1: // "chest x-ray showing a and b." / "normal chest x-ray."
                if (findings.Count == 0)
                    return rng.Chance(0.5) ? $"normal {modality}." : $"{modality} with no abnormality. {negatives.FirstOrDefault() ?? "normal study"}.";
                return $"{modality} showing {JoinAnd(findings)}.";
            default: // "a and b, seen on a chest x-ray." / "no abnormality on this chest x-ray."
                if (findings.Count == 0)
                    return string.Join(". ", new[] { $"no abnormality on this {modality}" }.Concat(negatives)) + ".";
                return $"{JoinAnd(findings)}, seen on {Article(modality)} {modality}.";
        }
    }

    private static string Article(string word) => "aeiou".Contains(word[0]) || word.StartsWith("x-", StringComparison.Ordinal) || word.StartsWith("mri", StringComparison.Ordinal) ? "an" : "a";

    private static string JoinAnd(List<string> items) => items.Count switch
    {
        0 => "",
        1 => items[0],
        _ => string.Join(", ", items.Take(items.Count - 1)) + " and " + items[^1],
    };

    private static (string, List<string>, List<string>) ChestPhrases(ChestFindings f, SynthRandom rng)
    {
        string modality = rng.Pick(["chest x-ray", "frontal chest radiograph", "pa chest x-ray", "x-ray of the chest"]);
        var findings = new List<string>();
        var negatives = new List<string>();
        if (f.Nodules > 0)
        {
            string where = $"{Side(f.NoduleSide)} {Zone(f.NoduleZone)} lung";
            string what = f.Nodules == 1 ? rng.Pick(["a nodule", "a small nodule", "one nodule"]) : $"{Numbers[f.Nodules]} nodules";
            findings.Add(rng.Chance(0.5) ? $"{what} in the {where}" : $"{what} in the {Zone(f.NoduleZone)} zone of the {Side(f.NoduleSide)} lung");
        }
        else negatives.Add(rng.Pick(["no nodules", "no lung nodule", "no focal nodule"]));
        if (f.Effusion is { } e) findings.Add(rng.Pick([$"a {Side(e)} pleural effusion", $"fluid in the {Side(e)} pleural space", $"{Side(e)} pleural effusion with a meniscus"]));
        else negatives.Add(rng.Pick(["no effusion", "no pleural effusion"]));
        if (f.Cardiomegaly) findings.Add(rng.Pick(["an enlarged heart", "cardiomegaly", "an enlarged cardiac silhouette"]));
        else negatives.Add(rng.Pick(["the heart is normal in size", "normal heart size"]));
        if (f.Pneumothorax is { } p) findings.Add(rng.Pick([$"a {Side(p)} pneumothorax", $"{Side(p)} pneumothorax with a visible pleural line", $"air in the {Side(p)} pleural space"]));
        else negatives.Add("no pneumothorax");
        if (f.Nodules == 0 && f.Effusion is null && f.Pneumothorax is null) negatives.Add("the lungs are clear");
        return (modality, findings, negatives);
    }

    private static (string, List<string>, List<string>) BrainPhrases(BrainFindings f, SynthRandom rng)
    {
        string modality = rng.Pick(["axial brain mri", "mri of the head", "t1 weighted brain mri", "axial mri of the brain"]);
        var findings = new List<string>();
        var negatives = new List<string>();
        int left = f.CountOn(Synthetic.Side.Left), right = f.CountOn(Synthetic.Side.Right);
        if (left == 1 && right == 1)
            findings.Add(rng.Pick(["two tumors, one in each hemisphere", "a lesion in each hemisphere", "two enhancing lesions in both hemispheres"]));
        else if (left + right > 0)
        {
            string side = left > 0 ? "left" : "right";
            int n = left + right;
            string what = n == 1
                ? rng.Pick(["a bright enhancing lesion", "a tumor", "an enhancing mass", "a brain tumor"])
                : rng.Pick(["two bright lesions", "two tumors", "two enhancing masses"]);
            findings.Add($"{what} in the {side} hemisphere");
        }
        else
        {
            negatives.Add(rng.Pick(["no brain lesion", "no tumor", "the brain is normal"]));
            negatives.Add(rng.Pick(["the ventricles are normal", "normal brain"]));
        }
        return (modality, findings, negatives);
    }

    private static (string, List<string>, List<string>) AbdomenPhrases(AbdomenFindings f, SynthRandom rng)
    {
        string modality = rng.Pick(["abdominal ct", "axial ct of the abdomen", "ct scan of the abdomen", "contrast enhanced abdominal ct"]);
        var findings = new List<string>();
        var negatives = new List<string>();
        if (f.LiverLesions == 1) findings.Add(rng.Pick(["a low density lesion in the liver", "a liver lesion", "one hypodense liver lesion"]));
        else if (f.LiverLesions > 1) findings.Add(rng.Pick([$"{Numbers[f.LiverLesions]} lesions in the liver", $"{Numbers[f.LiverLesions]} hypodense liver lesions"]));
        else negatives.Add(rng.Pick(["the liver is normal", "no liver lesion"]));
        if (f.KidneyCyst is { } k) findings.Add(rng.Pick([$"a cyst in the {Side(k)} kidney", $"a {Side(k)} renal cyst", $"a simple cyst of the {Side(k)} kidney"]));
        else negatives.Add(rng.Pick(["the kidneys are normal", "no kidney cyst"]));
        return (modality, findings, negatives);
    }

    // ------------------------------------------------------------------ reports

    /// <summary>
    /// An IU-Xray-style report of a chest study: heart, lungs, pleura, then optional
    /// mediastinum / bones / impression sentences, 3–5 sentences in sentence case.
    /// </summary>
    public static string Report(ChestFindings f, SynthRandom rng)
    {
        var sentences = new List<string>
        {
            f.Cardiomegaly
                ? rng.Pick(["The heart is enlarged.", "Cardiomegaly.", "The cardiac silhouette is enlarged."])
                : rng.Pick(["The heart is normal in size.", "Heart size is normal.", "The heart size is within normal limits."]),
        };
        if (f.Nodules > 0)
        {
            string where = $"{Side(f.NoduleSide)} {Zone(f.NoduleZone)} {rng.Pick(["lobe", "lung"])}";
            sentences.Add(f.Nodules == 1
                ? rng.Pick([$"There is a nodule in the {where}.", $"A small nodule is seen in the {where}.", $"Nodular opacity in the {where}."])
                : rng.Pick([$"There are {Numbers[f.Nodules]} nodules in the {where}.", $"{Capitalise(Numbers[f.Nodules])} nodules are seen in the {where}."]));
        }
        else if (f.Effusion is null && f.Pneumothorax is null)
            sentences.Add(rng.Pick(["The lungs are clear.", "Lungs are clear bilaterally.", "No focal airspace disease."]));
        else
            sentences.Add(rng.Pick(["No focal nodule.", "No pulmonary nodules."]));

        if (f.Effusion is { } e)
            sentences.Add(rng.Pick([$"There is a {Side(e)} pleural effusion.", $"{Capitalise(Side(e))} pleural effusion with blunting of the costophrenic angle.", $"Small {Side(e)} pleural effusion."]));
        if (f.Pneumothorax is { } p)
            sentences.Add(rng.Pick([$"There is a {Side(p)} pneumothorax.", $"{Capitalise(Side(p))} pneumothorax with a visible pleural line.", $"A {Side(p)} pneumothorax is present."]));
        if (f.Effusion is null && f.Pneumothorax is null)
            sentences.Add(rng.Pick(["No pleural effusion or pneumothorax.", "No effusion or pneumothorax.", "There is no pleural effusion or pneumothorax."]));
        else if (f.Effusion is null)
            sentences.Add("No pleural effusion.");
        else if (f.Pneumothorax is null)
            sentences.Add("No pneumothorax.");

        var optional = new List<string>();
        if (rng.Chance(0.4)) optional.Add(rng.Pick(["The mediastinum is unremarkable.", "Mediastinal contours are normal."]));
        if (rng.Chance(0.4)) optional.Add(rng.Pick(["No acute bony abnormality.", "The osseous structures are intact.", "Visualized osseous structures are unremarkable."]));
        bool normal = f.Nodules == 0 && f.Effusion is null && f.Pneumothorax is null && !f.Cardiomegaly;
        if (normal && rng.Chance(0.5)) optional.Add(rng.Pick(["No acute cardiopulmonary disease.", "No acute cardiopulmonary abnormality."]));
        foreach (var s in optional)
            if (sentences.Count < 5) sentences.Add(s);
        return string.Join(" ", sentences);
    }
}
