namespace MedPeft.Data;

/// <summary>What a dataset is for.</summary>
public enum DatasetTask
{
    /// <summary>Visual question answering: yields <see cref="VqaSample"/>s.</summary>
    Vqa,
    /// <summary>Report generation: yields <see cref="ReportSample"/>s.</summary>
    Report,
}

/// <summary>One registered dataset format.</summary>
/// <param name="Name">The name used on the command line (<c>slake</c>, <c>vqa-rad</c>, …).</param>
/// <param name="DisplayName">The dataset's usual spelling (SLAKE, VQA-RAD, …).</param>
/// <param name="Task">Whether the format yields VQA samples or report samples.</param>
/// <param name="Layout">The expected folder layout, for help texts and error messages.</param>
public sealed record DatasetFormatInfo(string Name, string DisplayName, DatasetTask Task, string Layout);

/// <summary>
/// The registry of public dataset formats and a uniform way to enumerate a split of any of them.
/// Split names are the canonical <see cref="Splits"/> names; <see cref="CanonicalSplit"/> also
/// accepts the datasets' own spellings (val, validate, valid, dev).
/// </summary>
public static class DatasetFormats
{
    public const string Slake = "slake";
    public const string VqaRad = "vqa-rad";
    public const string PathVqa = "pathvqa";
    public const string IuXray = "iu-xray";
    public const string MimicCxr = "mimic-cxr";

    public static IReadOnlyList<DatasetFormatInfo> All { get; } =
    [
        new(Slake, "SLAKE", DatasetTask.Vqa, "Slake1.0/{train,validate,test}.json + Slake1.0/imgs/"),
        new(VqaRad, "VQA-RAD", DatasetTask.Vqa, "data_RAD/{trainset,testset}.json + data_RAD/images/, or \"VQA_RAD Dataset Public.json\" + \"VQA_RAD Image Folder/\""),
        new(PathVqa, "PathVQA", DatasetTask.Vqa, "pvqa/qas/{train,val,test}/<split>_qa.json + pvqa/images/<split>/"),
        new(IuXray, "IU-Xray", DatasetTask.Report, "iu_xray/annotation.json + iu_xray/images/"),
        new(MimicCxr, "MIMIC-CXR", DatasetTask.Report, "mimic_cxr/annotation.json + mimic_cxr/images/"),
    ];

    /// <summary>The format names, in registry order.</summary>
    public static IReadOnlyList<string> Names { get; } = All.Select(f => f.Name).ToArray();

    /// <summary>Looks a format up by name (case-insensitive; <c>_</c> counts as <c>-</c>; <c>path-vqa</c>, <c>vqarad</c>, <c>iuxray</c>, <c>mimic</c> also work).</summary>
    public static DatasetFormatInfo Get(string format)
    {
        string key = (format ?? "").Trim().ToLowerInvariant().Replace('_', '-');
        key = key switch
        {
            "path-vqa" => PathVqa,
            "vqarad" => VqaRad,
            "iuxray" or "iu-x-ray" => IuXray,
            "mimic" or "mimiccxr" => MimicCxr,
            _ => key,
        };
        return All.FirstOrDefault(f => f.Name == key)
            ?? throw new MedPeftException($"unknown dataset format \"{format}\" (expected one of: {string.Join(", ", Names)})");
    }

    public static DatasetTask TaskOf(string format) => Get(format).Task;

    /// <summary>train / validation / test; also accepts val, valid, validate, dev (case-insensitive).</summary>
    public static string CanonicalSplit(string split) => (split ?? "").Trim().ToLowerInvariant() switch
    {
        "train" => Splits.Train,
        "validation" or "val" or "valid" or "validate" or "dev" => Splits.Validation,
        "test" => Splits.Test,
        _ => throw new MedPeftException($"unknown split \"{split}\" (expected train, validation or test)"),
    };

    /// <summary>
    /// The folder the format's reader works from (e.g. the <c>Slake1.0</c> folder); throws a
    /// <see cref="MedPeftException"/> when <paramref name="root"/> does not hold the format's layout.
    /// </summary>
    public static string ResolveRoot(string format, string root, ReaderOptions? options = null) => Get(format).Name switch
    {
        Slake => SlakeReader.ResolveRoot(root),
        VqaRad => ResolveVqaRad(root, options ?? ReaderOptions.Default),
        PathVqa => PathVqaReader.ResolveRoot(root),
        IuXray => R2GenAnnotationReader.ResolveRoot(root, R2GenDataset.IuXray),
        _ => R2GenAnnotationReader.ResolveRoot(root, R2GenDataset.MimicCxr),
    };

    private static string ResolveVqaRad(string root, ReaderOptions options)
    {
        VqaRadReader.DetectLayout(root, options.VqaRadLayout); // throws when the layout is not there
        return Path.GetFullPath(root);
    }

    /// <summary>
    /// Enumerates one split of a VQA format. Missing files and unrecognised layouts throw at once;
    /// records are read lazily, and bad records throw while enumerating. Entries skipped on purpose
    /// (SLAKE's other-language questions) are counted in <paramref name="skips"/>.
    /// </summary>
    public static IEnumerable<VqaSample> ReadVqa(string format, string root, string split, ReaderOptions? options = null, SkipLog? skips = null)
    {
        var info = Get(format);
        options ??= ReaderOptions.Default;
        return info.Name switch
        {
            Slake => SlakeReader.Read(root, split, options.QuestionLanguage, skips),
            VqaRad => VqaRadReader.Read(root, split, options, skips),
            PathVqa => PathVqaReader.Read(root, split, skips),
            _ => throw new MedPeftException($"dataset format \"{info.Name}\" is a report-generation dataset, not VQA"),
        };
    }

    /// <summary>Enumerates one split of a report format (same conventions as <see cref="ReadVqa"/>).</summary>
    public static IEnumerable<ReportSample> ReadReports(string format, string root, string split, ReaderOptions? options = null, SkipLog? skips = null)
    {
        var info = Get(format);
        _ = options; // no report reader has options yet; kept for a uniform signature.
        return info.Name switch
        {
            IuXray => R2GenAnnotationReader.Read(root, split, R2GenDataset.IuXray, skips),
            MimicCxr => R2GenAnnotationReader.Read(root, split, R2GenDataset.MimicCxr, skips),
            _ => throw new MedPeftException($"dataset format \"{info.Name}\" is a VQA dataset, not report generation"),
        };
    }
}
