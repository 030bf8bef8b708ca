namespace MedPeft.Data;

/// <summary>The two report datasets that share R2Gen's <c>annotation.json</c> format.</summary>
public enum R2GenDataset
{
    /// <summary>IU-Xray: two views per study, both kept.</summary>
    IuXray,
    /// <summary>MIMIC-CXR: one entry per image; <c>image_path[0]</c> is used (R2Gen's behaviour), extra paths are ignored.</summary>
    MimicCxr,
}

/// <summary>
/// Reads R2Gen's <c>annotation.json</c> (<c>{"train": […], "val": […], "test": […]}</c>) for IU-Xray and
/// MIMIC-CXR; image paths are relative to <c>images/</c> beside the file.
/// </summary>
/// <remarks>
/// The file is streamed: only the requested key's array is parsed, one entry at a time (the other
/// keys are skipped token by token), so MIMIC-CXR's large file reads in constant memory. Required
/// fields: <c>id</c> (string or int) → <see cref="ReportSample.Id"/>, <c>report</c> (returned raw;
/// cleaning is done elsewhere), <c>image_path</c> (array of strings; a lone string is accepted).
/// <c>study_id</c>, <c>subject_id</c> (int or string), <c>split</c> and any other key are ignored;
/// the split is the dict key, as in R2Gen. Images are never opened.
/// </remarks>
public static class R2GenAnnotationReader
{
    public const string AnnotationFile = "annotation.json";
    public const string ImagesFolder = "images";

    public static string DatasetName(R2GenDataset dataset) => dataset == R2GenDataset.IuXray ? "IU-Xray" : "MIMIC-CXR";

    /// <summary>R2Gen's data folder name (<c>iu_xray</c> / <c>mimic_cxr</c>).</summary>
    public static string FolderName(R2GenDataset dataset) => dataset == R2GenDataset.IuXray ? "iu_xray" : "mimic_cxr";

    /// <summary>
    /// The folder holding <c>annotation.json</c>: <paramref name="root"/> itself, or
    /// <paramref name="root"/>/iu_xray (resp. mimic_cxr).
    /// </summary>
    public static string ResolveRoot(string root, R2GenDataset dataset)
    {
        string name = DatasetName(dataset);
        ReaderPaths.RequireDirectory(name, root);
        foreach (string dir in new[] { root, Path.Combine(root, FolderName(dataset)) })
            if (File.Exists(Path.Combine(dir, AnnotationFile)))
                return Path.GetFullPath(dir);
        throw new MedPeftException($"{name}: no {AnnotationFile} in {root} or {Path.Combine(root, FolderName(dataset))}");
    }

    /// <summary>The annotation key of a split: train, val, test.</summary>
    public static string SplitKey(string split) => DatasetFormats.CanonicalSplit(split) switch
    {
        Splits.Train => "train",
        Splits.Validation => "val",
        _ => "test",
    };

    /// <summary>Streams one split. The root is resolved now; the file is read lazily.</summary>
    public static IEnumerable<ReportSample> Read(string root, string split, R2GenDataset dataset, SkipLog? skips = null)
    {
        _ = skips; // nothing is skipped; kept for a uniform signature.
        string dir = ResolveRoot(root, dataset);
        return ReadFile(Path.Combine(dir, AnnotationFile), SplitKey(split), dataset);
    }

    /// <summary>Streams the array under <paramref name="key"/> of an annotation file; images resolve against <c>images/</c> beside it.</summary>
    public static IEnumerable<ReportSample> ReadFile(string annotationPath, string key, R2GenDataset dataset)
    {
        string label = $"{DatasetName(dataset)} {Path.GetFileName(annotationPath)}";
        if (!File.Exists(annotationPath)) throw new MedPeftException($"{label}: file not found ({Path.GetFullPath(annotationPath)})");
        string imagesDir = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(annotationPath))!, ImagesFolder);
        return Iterate(annotationPath, label, key, imagesDir, dataset);
    }

    private static IEnumerable<ReportSample> Iterate(string path, string label, string key, string imagesDir, R2GenDataset dataset)
    {
        using var cursor = JsonArrayCursor.OpenArrayUnderKey(path, label, key);
        while (cursor.MoveNext(out var element))
        {
            var f = new RecordFields(element, label, $"\"{key}\" record {cursor.Index}");
            string id = f.Text("id");
            string report = f.String("report");
            var rel = f.StringList("image_path");
            string[] images = dataset == R2GenDataset.MimicCxr
                ? [ReaderPaths.Under(imagesDir, rel[0])]
                : rel.Select(p => ReaderPaths.Under(imagesDir, p)).ToArray();
            yield return new ReportSample(id, images, report);
        }
    }
}
