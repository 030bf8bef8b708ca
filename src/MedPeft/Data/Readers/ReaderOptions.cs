namespace MedPeft.Data;

/// <summary>Which of VQA-RAD's two on-disk layouts to read.</summary>
public enum VqaRadLayout
{
    /// <summary><c>data_RAD/trainset.json</c> + <c>testset.json</c> when present, else the official file.</summary>
    Auto,
    /// <summary>The MEVF / MICCAI19-MedVQA <c>data_RAD/{trainset,testset}.json</c> (3,064 / 451 records).</summary>
    DataRad,
    /// <summary>The official OSF <c>VQA_RAD Dataset Public.json</c>, test iff "test" is in <c>phrase_type</c> (1,797 / 451).</summary>
    Official,
}

/// <summary>Options shared by the dataset readers; each reader uses the ones that concern it.</summary>
public sealed record ReaderOptions
{
    public static ReaderOptions Default { get; } = new();

    /// <summary>SLAKE: keep only questions whose <c>q_lang</c> equals this (case-insensitive); null keeps all. Default "en", as papers report.</summary>
    public string? QuestionLanguage { get; init; } = "en";

    /// <summary>VQA-RAD: which layout to read when a folder holds both.</summary>
    public VqaRadLayout VqaRadLayout { get; init; } = VqaRadLayout.Auto;

    /// <summary>VQA-RAD has no validation split: this fraction of the train split's distinct images (default 10 %) is carved out as validation.</summary>
    public double VqaRadValidationFraction { get; init; } = 0.1;

    /// <summary>Seed of the VQA-RAD validation carve-out (default 42).</summary>
    public int VqaRadValidationSeed { get; init; } = 42;
}
