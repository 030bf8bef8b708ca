namespace MedPeft.Data;

/// <summary>
/// Reads SLAKE 1.0 (<c>Slake1.0/{train,validate,test}.json</c>, images in <c>Slake1.0/imgs/</c>).
/// </summary>
/// <remarks>
/// Each file is one JSON array of records (<c>qid, img_id, img_name, question, answer, q_lang,
/// answer_type, …</c>, key order varying). Records are streamed; images are never opened, only
/// their paths built (<c>imgs/</c> + <c>img_name</c>, which already holds <c>xmlabN/</c>).
/// Required fields: <c>qid</c> (int or string), <c>img_name</c>, <c>question</c>, <c>answer</c>
/// (numbers tolerated, trimmed), and <c>q_lang</c> when a language filter is set; <c>answer_type</c>
/// is optional (trimmed, upper-cased). Records of another language are skipped and counted as
/// <c>q_lang=&lt;value&gt;</c>. Questions are kept as written; duplicates are kept.
/// </remarks>
public static class SlakeReader
{
    public const string DatasetName = "SLAKE";
    public const string FolderName = "Slake1.0";
    public const string ImagesFolder = "imgs";

    /// <summary>
    /// The folder holding <c>train.json</c> etc.: <paramref name="root"/>/Slake1.0 when that exists,
    /// else <paramref name="root"/> itself if it looks like the Slake1.0 folder.
    /// </summary>
    public static string ResolveRoot(string root)
    {
        ReaderPaths.RequireDirectory(DatasetName, root);
        string inner = Path.Combine(root, FolderName);
        if (Directory.Exists(inner)) return Path.GetFullPath(inner);
        if (Splits.All.Any(s => File.Exists(Path.Combine(root, SplitFileName(s)))) || Directory.Exists(Path.Combine(root, ImagesFolder)))
            return Path.GetFullPath(root);
        throw new MedPeftException($"{DatasetName}: no {FolderName}/ folder and no train.json / validate.json / test.json in {root}");
    }

    /// <summary>train → train.json, validation → validate.json, test → test.json.</summary>
    public static string SplitFileName(string split) => DatasetFormats.CanonicalSplit(split) switch
    {
        Splits.Train => "train.json",
        Splits.Validation => "validate.json",
        _ => "test.json",
    };

    /// <summary>Absolute path of one split's JSON file.</summary>
    public static string SplitFilePath(string root, string split) => Path.Combine(ResolveRoot(root), SplitFileName(split));

    /// <summary>Streams one split. <paramref name="qLang"/> = null keeps every language.</summary>
    public static IEnumerable<VqaSample> Read(string root, string split, string? qLang = "en", SkipLog? skips = null)
        => ReadFile(SplitFilePath(root, split), qLang, skips);

    /// <summary>
    /// Streams one SLAKE-format JSON file; images are resolved against <c>imgs/</c> beside the file.
    /// The file must exist (checked now); records are read lazily.
    /// </summary>
    public static IEnumerable<VqaSample> ReadFile(string jsonPath, string? qLang = "en", SkipLog? skips = null)
    {
        string label = $"{DatasetName} {Path.GetFileName(jsonPath)}";
        if (!File.Exists(jsonPath)) throw new MedPeftException($"{label}: file not found ({Path.GetFullPath(jsonPath)})");
        string imagesDir = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(jsonPath))!, ImagesFolder);
        return Iterate(jsonPath, label, imagesDir, qLang, skips);
    }

    private static IEnumerable<VqaSample> Iterate(string jsonPath, string label, string imagesDir, string? qLang, SkipLog? skips)
    {
        using var cursor = JsonArrayCursor.OpenTopLevelArray(jsonPath, label);
        while (cursor.MoveNext(out var element))
        {
            var f = new RecordFields(element, label, $"record {cursor.Index}");
            if (qLang is not null)
            {
                string lang = f.Text("q_lang");
                if (!string.Equals(lang.Trim(), qLang, StringComparison.OrdinalIgnoreCase))
                {
                    skips?.Add($"q_lang={lang.Trim()}");
                    continue;
                }
            }
            var sample = new VqaSample(
                Id: f.Text("qid"),
                ImagePath: ReaderPaths.Under(imagesDir, f.String("img_name")),
                Question: f.String("question"),
                Answer: f.Text("answer").Trim(),
                AnswerType: ReaderPaths.AnswerType(f.OptionalText("answer_type")));
            yield return sample;
        }
    }
}
