namespace MedPeft.Data.Synthetic;

/// <summary>Which kind of synthetic study an image shows; each is drawn differently (not just labelled).</summary>
public enum SynthModality
{
    /// <summary>Frontal (PA) chest radiograph; the report set adds a lateral view.</summary>
    ChestXray,
    /// <summary>Axial T1-weighted post-contrast brain MRI slice at the level of the lateral ventricles.</summary>
    BrainMri,
    /// <summary>Axial contrast-enhanced abdominal CT slice at the level of the liver and kidneys.</summary>
    AbdomenCt,
}

/// <summary>
/// The PATIENT's side. Images follow the radiological convention: the patient's right is drawn
/// on the image's left and the patient's left on the image's right (for chest radiographs and
/// for axial MRI/CT, which are viewed from the feet). All question, answer, caption and report
/// text says "left"/"right" in the patient's sense, as radiologists do.
/// </summary>
public enum Side
{
    Right,
    Left,
}

/// <summary>Upper or lower half of a lung field.</summary>
public enum LungZone
{
    Upper,
    Lower,
}

/// <summary>
/// The ground truth of one synthetic study. Exactly one of <see cref="Chest"/>, <see cref="Brain"/>,
/// <see cref="Abdomen"/> is set, according to <see cref="Modality"/>.
/// </summary>
public sealed record SyntheticStudy(SynthModality Modality, ChestFindings? Chest, BrainFindings? Brain, AbdomenFindings? Abdomen)
{
    /// <summary>Names of the abnormalities present (answer vocabulary of "What abnormality is seen?").</summary>
    public IReadOnlyList<string> Abnormalities => Modality switch
    {
        SynthModality.ChestXray => Chest!.Abnormalities,
        SynthModality.BrainMri => Brain!.Lesions.Count > 0 ? ["brain tumor"] : [],
        _ => Abdomen!.Abnormalities,
    };

    /// <summary>Organs that carry an abnormality ("lung", "heart", "brain", "liver", "kidney").</summary>
    public IReadOnlyList<string> AbnormalOrgans => Modality switch
    {
        SynthModality.ChestXray => Chest!.AbnormalOrgans,
        SynthModality.BrainMri => Brain!.Lesions.Count > 0 ? ["brain"] : [],
        _ => Abdomen!.AbnormalOrgans,
    };

    public bool IsNormal => Abnormalities.Count == 0;

    /// <summary>Organs visible in the image (for "Does the picture contain …?").</summary>
    public IReadOnlyList<string> VisibleOrgans => Modality switch
    {
        SynthModality.ChestXray => ["lung", "heart"],
        SynthModality.BrainMri => ["brain"],
        _ => ["liver", "kidney", "spleen"],
    };
}

/// <summary>Chest radiograph findings. Nodules all sit in one zone of one lung.</summary>
public sealed record ChestFindings(int Nodules, Side NoduleSide, LungZone NoduleZone, Side? Effusion, bool Cardiomegaly, Side? Pneumothorax)
{
    public IReadOnlyList<string> Abnormalities
    {
        get
        {
            var list = new List<string>();
            if (Nodules > 0) list.Add("nodule");
            if (Effusion is not null) list.Add("pleural effusion");
            if (Cardiomegaly) list.Add("cardiomegaly");
            if (Pneumothorax is not null) list.Add("pneumothorax");
            return list;
        }
    }

    public IReadOnlyList<string> AbnormalOrgans
    {
        get
        {
            var list = new List<string>();
            if (Nodules > 0 || Effusion is not null || Pneumothorax is not null) list.Add("lung");
            if (Cardiomegaly) list.Add("heart");
            return list;
        }
    }
}

/// <summary>Brain MRI findings: one entry per enhancing lesion (tumor), giving its hemisphere.</summary>
public sealed record BrainFindings(IReadOnlyList<Side> Lesions)
{
    public int CountOn(Side side) => Lesions.Count(s => s == side);
}

/// <summary>Abdominal CT findings: hypodense liver lesions (0–2) and an optional simple renal cyst.</summary>
public sealed record AbdomenFindings(int LiverLesions, Side? KidneyCyst)
{
    public IReadOnlyList<string> Abnormalities
    {
        get
        {
            var list = new List<string>();
            if (LiverLesions > 0) list.Add("liver lesion");
            if (KidneyCyst is not null) list.Add("kidney cyst");
            return list;
        }
    }

    public IReadOnlyList<string> AbnormalOrgans
    {
        get
        {
            var list = new List<string>();
            if (LiverLesions > 0) list.Add("liver");
            if (KidneyCyst is not null) list.Add("kidney");
            return list;
        }
    }
}

/// <summary>Draws random studies. Prevalences are chosen so every finding is common but normal studies still occur (~20 % of chests).</summary>
public static class StudySampler
{
    /// <summary>Mix of modalities in the Med-VQA and pretraining pools (chest-heavy like SLAKE/VQA-RAD).</summary>
    public static SyntheticStudy Sample(SynthRandom rng)
    {
        int m = rng.PickWeighted([0.4, 0.3, 0.3]);
        return m switch
        {
            0 => SampleChest(rng),
            1 => SampleBrain(rng),
            _ => SampleAbdomen(rng),
        };
    }

    public static SyntheticStudy SampleChest(SynthRandom rng)
    {
        int nodules = rng.PickWeighted([0.55, 0.2, 0.15, 0.1]);
        var noduleSide = rng.Chance(0.5) ? Side.Left : Side.Right;
        var noduleZone = rng.Chance(0.5) ? LungZone.Upper : LungZone.Lower;
        Side? effusion = rng.Chance(0.3) ? (rng.Chance(0.5) ? Side.Left : Side.Right) : null;
        bool cardiomegaly = rng.Chance(0.3);
        Side? pneumothorax = rng.Chance(0.2) ? (rng.Chance(0.5) ? Side.Left : Side.Right) : null;

        // A lower-zone nodule would be hidden under an effusion on the same side; a pneumothorax
        // and an effusion on one side would be a hydropneumothorax (air-fluid level), which we
        // do not draw. Move the effusion to the other lung, and drop a pneumothorax that clashes.
        if (nodules > 0 && noduleZone == LungZone.Lower && effusion == noduleSide) effusion = Other(noduleSide);
        if (pneumothorax is not null && pneumothorax == effusion) pneumothorax = null;
        if (nodules == 0) (noduleSide, noduleZone) = (Side.Right, LungZone.Upper);
        return new SyntheticStudy(SynthModality.ChestXray, new ChestFindings(nodules, noduleSide, noduleZone, effusion, cardiomegaly, pneumothorax), null, null);
    }

    public static SyntheticStudy SampleBrain(SynthRandom rng)
    {
        int count = rng.PickWeighted([0.35, 0.4, 0.25]);
        var lesions = new List<Side>();
        for (int i = 0; i < count; i++) lesions.Add(rng.Chance(0.5) ? Side.Left : Side.Right);
        lesions.Sort(); // right before left: a stable order for the text
        return new SyntheticStudy(SynthModality.BrainMri, null, new BrainFindings(lesions), null);
    }

    public static SyntheticStudy SampleAbdomen(SynthRandom rng)
    {
        int liver = rng.PickWeighted([0.5, 0.3, 0.2]);
        Side? cyst = rng.Chance(0.4) ? (rng.Chance(0.5) ? Side.Left : Side.Right) : null;
        return new SyntheticStudy(SynthModality.AbdomenCt, null, null, new AbdomenFindings(liver, cyst));
    }

    public static Side Other(Side side) => side == Side.Left ? Side.Right : Side.Left;
}
