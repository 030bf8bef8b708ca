namespace MedPeft.Data.Synthetic;

/// <summary>
/// What the synthetic benchmark generator makes. Every output byte is a function of these
/// values (and <see cref="SyntheticBench.GeneratorVersion"/>): same options ⇒ same files.
/// </summary>
/// <remarks>
/// Defaults are sized for a ~10-minute CPU study with a small BLIP: the Med-VQA split has
/// 1000 / 150 / 250 images × 4 questions = 4000 / 600 / 1000 questions, close to SLAKE's English
/// 4919 / 1053 / 1061, so per-epoch cost and the number of answers per question type resemble
/// the real benchmark; 2000 captioned pretraining images give the "pretrained" checkpoint enough
/// image–text pairs to learn the findings vocabulary; the report set is 400 / 60 / 100 studies
/// (IU-Xray is 2069 / 296 / 590, scaled down by ~5 like the VQA set). Generating the defaults at
/// 64 px takes a few seconds. <see cref="Quick"/> is ~4× smaller for smoke runs and tests.
/// </remarks>
public sealed record SyntheticBenchOptions
{
    /// <summary>Seed of every random choice (findings, jitter, noise, question choice, wording).</summary>
    public int Seed { get; init; } = 1234;

    /// <summary>Width = height of every image, in pixels (16–1024; 32, 64 and 128 are tuned).</summary>
    public int ImageSize { get; init; } = 64;

    /// <summary>Med-VQA images per split (SLAKE layout; images are disjoint across splits).</summary>
    public int TrainImages { get; init; } = 1000;
    public int ValidationImages { get; init; } = 150;
    public int TestImages { get; init; } = 250;

    /// <summary>Questions asked about each Med-VQA image (distinct question types; fewer if an image has fewer applicable types).</summary>
    public int QuestionsPerImage { get; init; } = 4;

    /// <summary>Captioned images for pretraining (a separate pool, not the Med-VQA images).</summary>
    public int PretrainImages { get; init; } = 2000;

    /// <summary>Report-generation studies per split (IU-Xray layout, two views each).</summary>
    public int ReportTrain { get; init; } = 400;
    public int ReportVal { get; init; } = 60;
    public int ReportTest { get; init; } = 100;

    /// <summary>The defaults: a full study on a laptop CPU in about ten minutes.</summary>
    public static SyntheticBenchOptions Default { get; } = new();

    /// <summary>About 4× smaller than <see cref="Default"/>: smoke runs, CI, tests.</summary>
    public static SyntheticBenchOptions Quick { get; } = new()
    {
        TrainImages = 250,
        ValidationImages = 40,
        TestImages = 60,
        PretrainImages = 500,
        ReportTrain = 100,
        ReportVal = 15,
        ReportTest = 25,
    };

    /// <summary>Throws <see cref="MedPeftException"/> naming the first option out of range.</summary>
    public void Validate()
    {
        if (ImageSize is < 16 or > 1024)
            throw new MedPeftException($"synthetic benchmark: ImageSize must be 16–1024 pixels, got {ImageSize}");
        if (QuestionsPerImage is < 1 or > 12)
            throw new MedPeftException($"synthetic benchmark: QuestionsPerImage must be 1–12, got {QuestionsPerImage}");
        Check(nameof(TrainImages), TrainImages);
        Check(nameof(ValidationImages), ValidationImages);
        Check(nameof(TestImages), TestImages);
        Check(nameof(PretrainImages), PretrainImages);
        Check(nameof(ReportTrain), ReportTrain);
        Check(nameof(ReportVal), ReportVal);
        Check(nameof(ReportTest), ReportTest);
        if (ReportTrain + ReportVal + ReportTest > 9999)
            throw new MedPeftException("synthetic benchmark: ReportTrain + ReportVal + ReportTest must be at most 9999");

        static void Check(string name, int value)
        {
            if (value is < 0 or > 1_000_000)
                throw new MedPeftException($"synthetic benchmark: {name} must be 0–1000000, got {value}");
        }
    }
}
