namespace MedPeft.Data;

/// <summary>
/// Reads PathVQA from the authors' <c>pvqa/</c> folder: <c>qas/{train,val,test}/&lt;split&gt;_qa.json</c>,
/// each a JSON list of <c>{"image": "val_0261", "question": …, "answer": …}</c>, images at
/// <c>images/&lt;split&gt;/&lt;image&gt;.jpg</c>.
/// </summary>
/// <remarks>
/// The release ships these lists as Python pickles (<c>&lt;split&gt;_qa.pkl</c>); they must be
/// converted to JSON once (see <see cref="ConvertCommand"/>), and a folder with only the pickle
/// gets an error saying so. PathVQA has no question ids: <see cref="VqaSample.Id"/> is
/// <c>&lt;split&gt;-&lt;record index&gt;</c> (e.g. <c>val-17</c>). <see cref="VqaSample.AnswerType"/> is
/// null (closed = yes/no is decided by the scorer). Answers are trimmed; duplicates are kept.
/// </remarks>
public static class PathVqaReader
{
    public const string DatasetName = "PathVQA";
    public const string FolderName = "pvqa";

    /// <summary>The <c>pvqa</c> folder: <paramref name="root"/>/pvqa when it exists, else <paramref name="root"/> if it has <c>qas/</c>.</summary>
    public static string ResolveRoot(string root)
    {
        ReaderPaths.RequireDirectory(DatasetName, root);
        string inner = Path.Combine(root, FolderName);
        if (Directory.Exists(Path.Combine(inner, "qas"))) return Path.GetFullPath(inner);
        if (Directory.Exists(Path.Combine(root, "qas"))) return Path.GetFullPath(root);
        throw new MedPeftException($"{DatasetName}: no {FolderName}/qas/ or qas/ folder in {root}");
    }

    /// <summary>The dataset's own split name: train, val, test.</summary>
    public static string SplitName(string split) => DatasetFormats.CanonicalSplit(split) switch
    {
        Splits.Train => "train",
        Splits.Validation => "val",
        _ => "test",
    };

    /// <summary><c>qas/&lt;s&gt;/&lt;s&gt;_qa.json</c> under the resolved root.</summary>
    public static string QaFilePath(string root, string split)
    {
        string s = SplitName(split);
        return Path.Combine(ResolveRoot(root), "qas", s, $"{s}_qa.json");
    }

    /// <summary>A one-line shell command converting a <c>_qa.pkl</c> file to the <c>_qa.json</c> beside it.</summary>
    public static string ConvertCommand(string pklPath, string jsonPath)
        => $"python3 -c \"import json,pickle,sys; json.dump(pickle.load(open(sys.argv[1],'rb')), open(sys.argv[2],'w'))\" '{pklPath}' '{jsonPath}'";

    /// <summary>Streams one split. The file must exist (checked now); records are read lazily.</summary>
    public static IEnumerable<VqaSample> Read(string root, string split, SkipLog? skips = null)
    {
        _ = skips; // PathVQA skips nothing; kept for a uniform signature.
        string s = SplitName(split);
        string json = QaFilePath(root, split);
        string label = $"{DatasetName} {Path.GetFileName(json)}";
        if (!File.Exists(json))
        {
            string pkl = Path.ChangeExtension(json, ".pkl");
            if (File.Exists(pkl))
                throw new MedPeftException($"{label}: only the Python pickle {pkl} exists, which MedPeft cannot read; convert it once with: {ConvertCommand(pkl, json)}");
            throw new MedPeftException($"{label}: file not found ({json})");
        }
        string imagesDir = Path.Combine(Path.GetDirectoryName(Path.GetDirectoryName(Path.GetDirectoryName(json)!)!)!, "images", s);
        return Iterate(json, label, imagesDir, s);
    }

    private static IEnumerable<VqaSample> Iterate(string json, string label, string imagesDir, string s)
    {
        using var cursor = JsonArrayCursor.OpenTopLevelArray(json, label);
        while (cursor.MoveNext(out var element))
        {
            var f = new RecordFields(element, label, $"record {cursor.Index}");
            string image = f.Text("image").Trim();
            string ext = Path.GetExtension(image).ToLowerInvariant();
            if (ext is not (".jpg" or ".jpeg" or ".png")) image += ".jpg";
            yield return new VqaSample(
                Id: $"{s}-{cursor.Index}",
                ImagePath: ReaderPaths.Under(imagesDir, image),
                Question: f.String("question"),
                Answer: f.Text("answer").Trim(),
                AnswerType: null);
        }
    }
}
