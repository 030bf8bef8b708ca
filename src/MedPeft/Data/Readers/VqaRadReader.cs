using System.Text;

namespace MedPeft.Data;

/// <summary>
/// Reads VQA-RAD in either of its two layouts:
/// <list type="bullet">
/// <item><c>data_RAD/trainset.json</c> + <c>testset.json</c>, images in <c>data_RAD/images/</c>
/// (MEVF / MICCAI19-MedVQA processed files; 3,064 train / 451 test records);</item>
/// <item>the official OSF <c>VQA_RAD Dataset Public.json</c>, images in <c>VQA_RAD Image Folder/</c>;
/// a record is test iff its <c>phrase_type</c> contains "test" (case-insensitive) → 1,797 / 451.</item>
/// </list>
/// </summary>
/// <remarks>
/// Answers may be JSON ints (→ invariant text, <c>2</c> → "2"); answers and <c>answer_type</c>
/// are trimmed (<c>"CLOSED "</c> → CLOSED, upper-cased); answer casing is kept (the scorer
/// normalises); questions are kept as written (embedded tabs included); duplicates are kept.
/// Required fields: <c>qid</c>, <c>image_name</c>, <c>question</c>, <c>answer</c>,
/// <c>answer_type</c>, and <c>phrase_type</c> in the official layout; all others are ignored.
/// <para>
/// VQA-RAD has no validation split. <see cref="Splits.Validation"/> is carved out of the train
/// split <b>by image</b>: a fixed fraction of the train split's distinct image names (default 10 %,
/// seed 42, see <see cref="ValidationImages"/>) goes to validation together with every question on
/// those images, and <see cref="Splits.Train"/> is the rest, so no image is shared between train
/// and validation. (Test images do also occur in train: the official split is by question.)
/// The choice depends only on the set of image names, the fraction and the seed — not on file
/// order, .NET version or platform.
/// </para>
/// </remarks>
public static class VqaRadReader
{
    public const string DatasetName = "VQA-RAD";
    public const string DataRadFolder = "data_RAD";
    public const string DataRadTrainFile = "trainset.json";
    public const string DataRadTestFile = "testset.json";
    public const string DataRadImagesFolder = "images";
    public const string OfficialFile = "VQA_RAD Dataset Public.json";
    public const string OfficialImagesFolder = "VQA_RAD Image Folder";

    /// <summary>
    /// Which layout <paramref name="root"/> holds. Auto prefers <c>data_RAD/</c> when both are present.
    /// <paramref name="root"/> may also be the <c>data_RAD</c> folder itself.
    /// </summary>
    public static VqaRadLayout DetectLayout(string root, VqaRadLayout requested = VqaRadLayout.Auto)
    {
        ReaderPaths.RequireDirectory(DatasetName, root);
        bool dataRad = DataRadDir(root) is not null;
        bool official = File.Exists(Path.Combine(root, OfficialFile));
        switch (requested)
        {
            case VqaRadLayout.DataRad when !dataRad:
                throw new MedPeftException($"{DatasetName}: no {DataRadFolder}/{DataRadTrainFile} or {DataRadTestFile} in {root}");
            case VqaRadLayout.Official when !official:
                throw new MedPeftException($"{DatasetName}: no \"{OfficialFile}\" in {root}");
            case VqaRadLayout.DataRad or VqaRadLayout.Official:
                return requested;
        }
        if (dataRad) return VqaRadLayout.DataRad;
        if (official) return VqaRadLayout.Official;
        throw new MedPeftException($"{DatasetName}: found neither {DataRadFolder}/{DataRadTrainFile} nor \"{OfficialFile}\" in {root}");
    }

    /// <summary>Streams one split (train and validation are read whole first, to carve validation out by image).</summary>
    public static IEnumerable<VqaSample> Read(string root, string split, ReaderOptions? options = null, SkipLog? skips = null)
    {
        options ??= ReaderOptions.Default;
        string canonical = DatasetFormats.CanonicalSplit(split);
        var layout = DetectLayout(root, options.VqaRadLayout);
        if (options.VqaRadValidationFraction is < 0 or >= 1 || double.IsNaN(options.VqaRadValidationFraction))
            throw new MedPeftException($"{DatasetName}: validation fraction must be in [0, 1), got {options.VqaRadValidationFraction}");

        IEnumerable<(VqaSample Sample, string Image)> records;
        if (layout == VqaRadLayout.DataRad)
        {
            string dir = DataRadDir(root)!;
            string file = Path.Combine(dir, canonical == Splits.Test ? DataRadTestFile : DataRadTrainFile);
            records = ReadFile(file, Path.Combine(dir, DataRadImagesFolder), official: false, testSide: null);
        }
        else
        {
            records = ReadFile(Path.Combine(root, OfficialFile), Path.Combine(root, OfficialImagesFolder), official: true,
                testSide: canonical == Splits.Test);
        }

        if (canonical == Splits.Test) return records.Select(r => r.Sample);
        return CarveOut(records, canonical == Splits.Validation, options.VqaRadValidationFraction, options.VqaRadValidationSeed);
    }

    private static IEnumerable<VqaSample> CarveOut(IEnumerable<(VqaSample Sample, string Image)> records, bool wantValidation, double fraction, int seed)
    {
        var all = records.ToList();
        var validation = ValidationImages(all.Select(r => r.Image), fraction, seed);
        foreach (var (sample, image) in all)
            if (validation.Contains(image) == wantValidation)
                yield return sample;
    }

    /// <summary>
    /// The image names carved out of the train split as validation: k = round(fraction × n) of the
    /// n distinct names (at least 1 when fraction &gt; 0 and n ≥ 2, at most n − 1), chosen as the k
    /// names with the smallest key, where key = SplitMix64(seed ⊕ FNV-1a-64(UTF-8 name)), ties
    /// broken by ordinal name order. Deterministic and independent of input order and platform.
    /// </summary>
    public static IReadOnlySet<string> ValidationImages(IEnumerable<string> trainImageNames, double fraction = 0.1, int seed = 42)
    {
        var distinct = trainImageNames.Distinct(StringComparer.Ordinal).ToList();
        int n = distinct.Count;
        int k = fraction <= 0 || n < 2 ? 0 : Math.Clamp((int)Math.Round(n * fraction, MidpointRounding.AwayFromZero), 1, n - 1);
        return distinct
            .OrderBy(name => CarveKey(name, seed))
            .ThenBy(name => name, StringComparer.Ordinal)
            .Take(k)
            .ToHashSet(StringComparer.Ordinal);
    }

    private static ulong CarveKey(string name, int seed)
    {
        ulong h = 14695981039346656037UL; // FNV-1a 64
        foreach (byte b in Encoding.UTF8.GetBytes(name))
        {
            h ^= b;
            h *= 1099511628211UL;
        }
        ulong z = h ^ (ulong)(uint)seed ^ ((ulong)(uint)seed << 32);
        z += 0x9E3779B97F4A7C15UL; // SplitMix64 finaliser
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    private static string? DataRadDir(string root)
    {
        foreach (string dir in new[] { Path.Combine(root, DataRadFolder), root })
            if (File.Exists(Path.Combine(dir, DataRadTrainFile)) || File.Exists(Path.Combine(dir, DataRadTestFile)))
                return Path.GetFullPath(dir);
        return null;
    }

    /// <param name="jsonPath">The JSON file.</param>
    /// <param name="imagesDir">The folder image names are relative to.</param>
    /// <param name="official">True for the official OSF file (split by phrase_type).</param>
    /// <param name="testSide">Official layout: true keeps test records, false keeps train records; null keeps all.</param>
    private static IEnumerable<(VqaSample, string)> ReadFile(string jsonPath, string imagesDir, bool official, bool? testSide)
    {
        string label = $"{DatasetName} {Path.GetFileName(jsonPath)}";
        if (!File.Exists(jsonPath)) throw new MedPeftException($"{label}: file not found ({Path.GetFullPath(jsonPath)})");
        return Iterate(jsonPath, label, Path.GetFullPath(imagesDir), official, testSide);
    }

    private static IEnumerable<(VqaSample, string)> Iterate(string jsonPath, string label, string imagesDir, bool official, bool? testSide)
    {
        using var cursor = JsonArrayCursor.OpenTopLevelArray(jsonPath, label);
        while (cursor.MoveNext(out var element))
        {
            var f = new RecordFields(element, label, $"record {cursor.Index}");
            if (official && testSide is bool wantTest)
            {
                bool isTest = f.Text("phrase_type").Contains("test", StringComparison.OrdinalIgnoreCase);
                if (isTest != wantTest) continue;
            }
            string image = f.Text("image_name").Trim();
            var sample = new VqaSample(
                Id: f.Text("qid"),
                ImagePath: ReaderPaths.Under(imagesDir, image),
                Question: f.String("question"),
                Answer: f.Text("answer").Trim(),
                AnswerType: ReaderPaths.AnswerType(f.Text("answer_type")));
            yield return (sample, image);
        }
    }
}
