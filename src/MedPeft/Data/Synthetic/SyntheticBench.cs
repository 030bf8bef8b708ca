using System.Diagnostics;
using System.Text;
using System.Text.Json;
using SkiaSharp;

namespace MedPeft.Data.Synthetic;

/// <summary>One Med-VQA image: SLAKE <c>img_id</c>, canonical split (<see cref="Splits"/>), ground truth.</summary>
public sealed record SyntheticVqaImage(int ImgId, string Split, SyntheticStudy Study, ulong RenderSeed)
{
    /// <summary>SLAKE's <c>img_name</c>: the path under <c>Slake1.0/imgs/</c>.</summary>
    public string ImgName => $"xmlab{ImgId}/source.jpg";
}

/// <summary>One pretraining image and its caption; <paramref name="Image"/> is relative to the benchmark folder.</summary>
public sealed record SyntheticCaption(string Image, SyntheticStudy Study, string Caption, ulong RenderSeed);

/// <summary>One report-generation study (IU-Xray layout): frontal <c>0.png</c> and lateral <c>1.png</c>.</summary>
public sealed record SyntheticReport(string Id, string Split, SyntheticStudy Study, string Report, ulong FrontalSeed, ulong LateralSeed);

/// <summary>Everything the generator will write, before any pixel is drawn (cheap: text and ground truth only).</summary>
public sealed record SyntheticBenchPlan(
    SyntheticBenchOptions Options,
    IReadOnlyList<SyntheticVqaImage> VqaImages,
    IReadOnlyList<SyntheticQuestion> Questions,
    IReadOnlyList<SyntheticCaption> Captions,
    IReadOnlyList<SyntheticReport> Reports);

/// <summary>Counts of what a generated benchmark folder holds.</summary>
public sealed record SyntheticBenchCounts(
    int TrainImages, int ValidationImages, int TestImages,
    int TrainQuestions, int ValidationQuestions, int TestQuestions,
    int PretrainImages, int ReportTrain, int ReportVal, int ReportTest, int Words);

/// <summary>
/// <c>manifest.json</c>, written last: a folder with a manifest whose generator, version and
/// options match is complete and need not be generated again.
/// </summary>
public sealed record SyntheticBenchManifest(string Generator, int Version, SyntheticBenchOptions Options, SyntheticBenchCounts Counts);

/// <summary>
/// The embedded synthetic benchmark: a deterministic generator of a Med-VQA set in SLAKE 1.0's
/// format, a captioned pretraining pool and a report-generation set in R2Gen's IU-Xray format,
/// so the whole study runs on a laptop CPU with nothing to download.
/// </summary>
/// <remarks>
/// Layout of the benchmark folder:
/// <code>
/// Slake1.0/{train,validate,test}.json       SLAKE records (one line each, json.dumps style)
/// Slake1.0/imgs/xmlab&lt;N&gt;/source.jpg         Med-VQA images (chest x-ray, brain MRI, abdominal CT)
/// pretrain/imgs/NNNNN.jpg                    pretraining images (a separate pool)
/// captions.jsonl                             {"image": "pretrain/imgs/NNNNN.jpg", "caption": "…"} per line
/// iu_xray/annotation.json                    {"train": […], "val": […], "test": […]}
/// iu_xray/images/&lt;id&gt;/{0,1}.png              frontal and lateral chest views
/// words.txt                                  every token of all questions, answers, captions, reports
/// manifest.json                              options, counts, generator version (written last)
/// </code>
/// Left/right in all text is the patient's side; images use the radiological convention
/// (patient's right on the image left). Same options ⇒ byte-identical files on one machine.
/// </remarks>
public static class SyntheticBench
{
    public const string GeneratorName = "MedPeft.Data.Synthetic";

    /// <summary>Bumped whenever the output for the same options changes: older folders are regenerated.</summary>
    public const int GeneratorVersion = 2;

    public const string ManifestFileName = "manifest.json";

    public static string SlakeRoot(string outDir) => Path.Combine(outDir, "Slake1.0");

    public static string CaptionsFile(string outDir) => Path.Combine(outDir, "captions.jsonl");

    public static string IuXrayRoot(string outDir) => Path.Combine(outDir, "iu_xray");

    public static string WordsFile(string outDir) => Path.Combine(outDir, "words.txt");

    /// <summary>SLAKE file stem of a canonical split.</summary>
    private static string SlakeName(string split) => split == Splits.Validation ? "validate" : split;

    /// <summary>R2Gen key of a canonical split.</summary>
    private static string R2GenName(string split) => split == Splits.Validation ? "val" : split;

    // ------------------------------------------------------------------ plan

    /// <summary>Samples every study and writes every text; no image is drawn.</summary>
    public static SyntheticBenchPlan Plan(SyntheticBenchOptions options)
    {
        options.Validate();
        int seed = options.Seed;

        var images = new List<SyntheticVqaImage>();
        var questions = new List<SyntheticQuestion>();
        int imgId = 0;
        foreach (var (split, count) in new[] { (Splits.Train, options.TrainImages), (Splits.Validation, options.ValidationImages), (Splits.Test, options.TestImages) })
        {
            string stream = $"vqa-{SlakeName(split)}";
            var inSplit = new List<(int, SyntheticStudy)>();
            for (int i = 0; i < count; i++)
            {
                var study = StudySampler.Sample(SynthRandom.Derive(seed, stream + "-study", i));
                images.Add(new SyntheticVqaImage(imgId, split, study, SynthRandom.DeriveSeed(seed, stream + "-render", i)));
                inSplit.Add((imgId++, study));
            }
            questions.AddRange(Questions.ForSplit(split, inSplit, options.QuestionsPerImage, questions.Count, SynthRandom.Derive(seed, stream + "-questions")));
        }

        var captions = new List<SyntheticCaption>();
        for (int i = 0; i < options.PretrainImages; i++)
        {
            var study = StudySampler.Sample(SynthRandom.Derive(seed, "pretrain-study", i));
            string caption = Narratives.Caption(study, SynthRandom.Derive(seed, "pretrain-text", i));
            captions.Add(new SyntheticCaption($"pretrain/imgs/{i:D5}.jpg", study, caption, SynthRandom.DeriveSeed(seed, "pretrain-render", i)));
        }

        var reports = new List<SyntheticReport>();
        int n = 0;
        foreach (var (split, count) in new[] { (Splits.Train, options.ReportTrain), (Splits.Validation, options.ReportVal), (Splits.Test, options.ReportTest) })
        {
            string stream = $"report-{R2GenName(split)}";
            for (int i = 0; i < count; i++)
            {
                n++;
                var study = StudySampler.SampleChest(SynthRandom.Derive(seed, stream + "-study", i));
                string report = Narratives.Report(study.Chest!, SynthRandom.Derive(seed, stream + "-text", i));
                // IU-Xray ids look like CXR<n>_IM-<nnnn>; a few real ones carry a "-1001" suffix.
                string id = n % 25 == 0 ? $"CXR{n}_IM-{n:D4}-1001" : $"CXR{n}_IM-{n:D4}";
                reports.Add(new SyntheticReport(id, split, study, report,
                    SynthRandom.DeriveSeed(seed, stream + "-render", 2 * i), SynthRandom.DeriveSeed(seed, stream + "-render", 2 * i + 1)));
            }
        }
        return new SyntheticBenchPlan(options, images, questions, captions, reports);
    }

    /// <summary>
    /// Every token of every question, answer, caption and report, lower-cased and split like
    /// BERT's basic tokenizer (whitespace, and each punctuation mark on its own), sorted
    /// ordinally. The same list is written to <c>words.txt</c>.
    /// </summary>
    public static IReadOnlyList<string> Vocabulary(SyntheticBenchOptions options) => Vocabulary(Plan(options));

    public static IReadOnlyList<string> Vocabulary(SyntheticBenchPlan plan)
    {
        var words = new SortedSet<string>(StringComparer.Ordinal);
        foreach (var q in plan.Questions)
        {
            Tokenize(q.Question, words);
            Tokenize(q.Answer, words);
        }
        foreach (var c in plan.Captions) Tokenize(c.Caption, words);
        foreach (var r in plan.Reports) Tokenize(r.Report, words);
        return [.. words];
    }

    private static void Tokenize(string text, ISet<string> into)
    {
        var current = new StringBuilder();
        foreach (char ch in text.ToLowerInvariant())
        {
            if (char.IsWhiteSpace(ch) || char.IsPunctuation(ch) || char.IsSymbol(ch))
            {
                if (current.Length > 0) into.Add(current.ToString());
                current.Clear();
                if (!char.IsWhiteSpace(ch)) into.Add(ch.ToString());
            }
            else current.Append(ch);
        }
        if (current.Length > 0) into.Add(current.ToString());
    }

    // ------------------------------------------------------------------ generation

    /// <summary>
    /// Makes sure <paramref name="outDir"/> holds the benchmark for <paramref name="options"/>
    /// (default: <see cref="SyntheticBenchOptions.Default"/>). Returns at once when its manifest
    /// matches; otherwise generates into <c>&lt;outDir&gt;.tmp-&lt;pid&gt;</c>, writes the manifest last
    /// and renames the folder into place, so a half-written folder is never taken as complete.
    /// A folder generated with other options or an older generator version is replaced (with
    /// whatever was cached inside it), and so is an incomplete one holding only generator
    /// outputs; a folder without a manifest that holds anything else is left alone and reported
    /// as an error, so a mistyped path never deletes user files.
    /// </summary>
    public static SyntheticBenchManifest EnsureGenerated(string outDir, SyntheticBenchOptions? options = null)
    {
        options ??= SyntheticBenchOptions.Default;
        options.Validate();
        outDir = Path.TrimEndingDirectorySeparator(Path.GetFullPath(outDir));

        var existing = ReadManifest(outDir);
        if (existing is not null && Matches(existing, options)) return existing;
        if (existing is null && !HoldsOnlyGeneratorEntries(outDir))
            throw new MedPeftException($"synthetic benchmark: '{outDir}' exists, has no {ManifestFileName} and holds files the generator did not write; it is left alone (delete it or choose another folder)");

        string parent = Path.GetDirectoryName(outDir) ?? throw new MedPeftException($"synthetic benchmark: '{outDir}' has no parent folder");
        Directory.CreateDirectory(parent);
        RemoveStaleTemporaries(outDir);
        string tmp = $"{outDir}.tmp-{Environment.ProcessId}";
        if (Directory.Exists(tmp)) Directory.Delete(tmp, recursive: true);

        SyntheticBenchManifest manifest;
        try
        {
            manifest = Generate(tmp, options);
        }
        catch
        {
            TryDelete(tmp);
            throw;
        }
        Publish(tmp, outDir, options);
        return manifest;
    }

    /// <summary>The manifest of a benchmark folder, or null if it has none (or an unreadable one).</summary>
    public static SyntheticBenchManifest? ReadManifest(string outDir)
    {
        string path = Path.Combine(outDir, ManifestFileName);
        if (!File.Exists(path)) return null;
        try
        {
            return JsonSerializer.Deserialize<SyntheticBenchManifest>(File.ReadAllText(path), ManifestJson);
        }
        catch (JsonException)
        {
            return null;
        }
    }

    /// <summary>The top-level entries the generator writes; a folder holding nothing else (or nothing) may be replaced.</summary>
    private static readonly HashSet<string> GeneratorEntries = ["Slake1.0", "pretrain", "iu_xray", "captions.jsonl", "words.txt", ManifestFileName];

    private static bool HoldsOnlyGeneratorEntries(string dir) =>
        !Directory.Exists(dir) || Directory.EnumerateFileSystemEntries(dir).All(e => GeneratorEntries.Contains(Path.GetFileName(e)));

    private static bool Matches(SyntheticBenchManifest m, SyntheticBenchOptions options) =>
        m.Generator == GeneratorName && m.Version == GeneratorVersion && m.Options == options;

    private static readonly JsonSerializerOptions ManifestJson = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
    };

    /// <summary>Moves the finished temporary folder to <paramref name="outDir"/>, replacing an outdated benchmark.</summary>
    private static void Publish(string tmp, string outDir, SyntheticBenchOptions options)
    {
        if (Directory.Exists(outDir))
        {
            // Only a generated (manifest-bearing) or generator-only folder gets here: move it aside first.
            string old = $"{outDir}.old-{Environment.ProcessId}";
            if (Directory.Exists(old)) Directory.Delete(old, recursive: true);
            try
            {
                Directory.Move(outDir, old);
            }
            catch (DirectoryNotFoundException)
            {
                // Another process moved it meanwhile; fall through.
            }
            TryDelete(old);
        }
        try
        {
            Directory.Move(tmp, outDir);
        }
        catch (IOException) when (ReadManifest(outDir) is { } m && Matches(m, options))
        {
            // Another process published the same benchmark first: use theirs.
            TryDelete(tmp);
        }
    }

    /// <summary>Deletes <c>&lt;outDir&gt;.tmp-&lt;pid&gt;</c> folders left by processes that no longer run.</summary>
    private static void RemoveStaleTemporaries(string outDir)
    {
        string parent = Path.GetDirectoryName(outDir)!;
        string prefix = Path.GetFileName(outDir) + ".tmp-";
        foreach (var dir in Directory.EnumerateDirectories(parent, prefix + "*"))
        {
            if (!int.TryParse(Path.GetFileName(dir)[prefix.Length..], out int pid) || pid == Environment.ProcessId) continue;
            if (!IsRunning(pid)) TryDelete(dir);
        }
    }

    private static bool IsRunning(int pid)
    {
        try
        {
            using var p = Process.GetProcessById(pid);
            return !p.HasExited;
        }
        catch (ArgumentException)
        {
            return false;
        }
        catch (InvalidOperationException)
        {
            return false;
        }
    }

    private static void TryDelete(string dir)
    {
        try
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
    }

    /// <summary>Writes the whole benchmark into <paramref name="dir"/> (which must not exist yet); the manifest comes last.</summary>
    private static SyntheticBenchManifest Generate(string dir, SyntheticBenchOptions options)
    {
        var plan = Plan(options);
        int size = options.ImageSize;
        string slake = SlakeRoot(dir), iu = IuXrayRoot(dir);
        Directory.CreateDirectory(Path.Combine(slake, "imgs"));
        Directory.CreateDirectory(Path.Combine(dir, "pretrain", "imgs"));
        Directory.CreateDirectory(Path.Combine(iu, "images"));

        // Every image is an independent job with its own seed, so the parallel order does not matter.
        var jobs = new List<(string Path, SyntheticStudy Study, ulong Seed, SynthView View, SKEncodedImageFormat Format)>();
        foreach (var img in plan.VqaImages)
            jobs.Add((Path.Combine(slake, "imgs", img.ImgName), img.Study, img.RenderSeed, SynthView.Frontal, SKEncodedImageFormat.Jpeg));
        foreach (var cap in plan.Captions)
            jobs.Add((Path.Combine(dir, cap.Image), cap.Study, cap.RenderSeed, SynthView.Frontal, SKEncodedImageFormat.Jpeg));
        foreach (var rep in plan.Reports)
        {
            jobs.Add((Path.Combine(iu, "images", rep.Id, "0.png"), rep.Study, rep.FrontalSeed, SynthView.Frontal, SKEncodedImageFormat.Png));
            jobs.Add((Path.Combine(iu, "images", rep.Id, "1.png"), rep.Study, rep.LateralSeed, SynthView.Lateral, SKEncodedImageFormat.Png));
        }
        Parallel.ForEach(jobs, job =>
        {
            Directory.CreateDirectory(Path.GetDirectoryName(job.Path)!);
            var pixels = SyntheticImages.RenderGray(job.Study, size, new SynthRandom(job.Seed), job.View);
            File.WriteAllBytes(job.Path, Acquisition.Encode(pixels, size, job.Format));
        });

        foreach (var split in Splits.All)
            WriteText(Path.Combine(slake, SlakeName(split) + ".json"), SlakeJson(plan, split));
        WriteText(CaptionsFile(dir), CaptionsJsonl(plan));
        WriteText(Path.Combine(iu, "annotation.json"), AnnotationJson(plan));
        var words = Vocabulary(plan);
        WriteText(WordsFile(dir), string.Concat(words.Select(w => w + "\n")));

        int Count<T>(IEnumerable<T> items, Func<T, string> split, string name) => items.Count(x => split(x) == name);
        var counts = new SyntheticBenchCounts(
            Count(plan.VqaImages, x => x.Split, Splits.Train), Count(plan.VqaImages, x => x.Split, Splits.Validation), Count(plan.VqaImages, x => x.Split, Splits.Test),
            Count(plan.Questions, x => x.Split, Splits.Train), Count(plan.Questions, x => x.Split, Splits.Validation), Count(plan.Questions, x => x.Split, Splits.Test),
            plan.Captions.Count,
            Count(plan.Reports, x => x.Split, Splits.Train), Count(plan.Reports, x => x.Split, Splits.Validation), Count(plan.Reports, x => x.Split, Splits.Test),
            words.Count);
        var manifest = new SyntheticBenchManifest(GeneratorName, GeneratorVersion, options, counts);
        WriteText(Path.Combine(dir, ManifestFileName), JsonSerializer.Serialize(manifest, ManifestJson) + "\n");
        return manifest;
    }

    private static void WriteText(string path, string text) => File.WriteAllText(path, text, new UTF8Encoding(encoderShouldEmitUTF8Identifier: false));

    // ------------------------------------------------------------------ file formats

    private static string LocationOf(SyntheticStudy s) => s.Modality switch
    {
        SynthModality.ChestXray => "Lung",
        SynthModality.BrainMri => "Brain_Tissue",
        _ => "Abdomen",
    };

    private static string ModalityOf(SyntheticStudy s) => s.Modality switch
    {
        SynthModality.ChestXray => "X-Ray",
        SynthModality.BrainMri => "MRI",
        _ => "CT",
    };

    /// <summary>One SLAKE split file: a JSON array on one line, Python json.dumps separators, no trailing newline.</summary>
    private static string SlakeJson(SyntheticBenchPlan plan, string split)
    {
        var byId = plan.VqaImages.ToDictionary(i => i.ImgId);
        var records = plan.Questions.Where(q => q.Split == split).Select(q =>
        {
            var img = byId[q.ImgId];
            return PyJson.Object(
                ("img_id", PyJson.Int(q.ImgId)),
                ("img_name", PyJson.Str(img.ImgName)),
                ("question", PyJson.Str(q.Question)),
                ("answer", PyJson.Str(q.Answer)),
                ("q_lang", PyJson.Str("en")),
                ("location", PyJson.Str(LocationOf(img.Study))),
                ("modality", PyJson.Str(ModalityOf(img.Study))),
                ("answer_type", PyJson.Str(q.AnswerType)),
                ("base_type", PyJson.Str("vqa")),
                ("content_type", PyJson.Str(q.ContentType)),
                ("triple", PyJson.Array([PyJson.Str("vhead"), PyJson.Str("_"), PyJson.Str("_")])),
                ("qid", PyJson.Int(q.Qid)));
        });
        return PyJson.Array(records);
    }

    private static string CaptionsJsonl(SyntheticBenchPlan plan)
    {
        var sb = new StringBuilder();
        foreach (var c in plan.Captions)
            sb.Append(PyJson.Object(("image", PyJson.Str(c.Image)), ("caption", PyJson.Str(c.Caption)))).Append('\n');
        return sb.ToString();
    }

    /// <summary>R2Gen's IU-Xray annotation.json: one object with train/val/test arrays, one line.</summary>
    private static string AnnotationJson(SyntheticBenchPlan plan)
    {
        string Entries(string split) => PyJson.Array(plan.Reports.Where(r => r.Split == split).Select(r => PyJson.Object(
            ("id", PyJson.Str(r.Id)),
            ("report", PyJson.Str(r.Report)),
            ("image_path", PyJson.Array([PyJson.Str($"{r.Id}/0.png"), PyJson.Str($"{r.Id}/1.png")])),
            ("split", PyJson.Str(R2GenName(split))))));
        return PyJson.Object(
            ("train", Entries(Splits.Train)),
            ("val", Entries(Splits.Validation)),
            ("test", Entries(Splits.Test)));
    }
}

/// <summary>JSON text exactly as Python's <c>json.dumps(obj, ensure_ascii=False)</c> writes it: ", " and ": " separators.</summary>
internal static class PyJson
{
    public static string Int(int value) => value.ToString(System.Globalization.CultureInfo.InvariantCulture);

    public static string Array(IEnumerable<string> items) => "[" + string.Join(", ", items) + "]";

    public static string Object(params (string Key, string Value)[] fields) =>
        "{" + string.Join(", ", fields.Select(f => Str(f.Key) + ": " + f.Value)) + "}";

    public static string Str(string s)
    {
        var sb = new StringBuilder(s.Length + 2).Append('"');
        foreach (char c in s)
        {
            switch (c)
            {
                case '"': sb.Append("\\\""); break;
                case '\\': sb.Append("\\\\"); break;
                case '\n': sb.Append("\\n"); break;
                case '\r': sb.Append("\\r"); break;
                case '\t': sb.Append("\\t"); break;
                case '\b': sb.Append("\\b"); break;
                case '\f': sb.Append("\\f"); break;
                default:
                    if (c < 0x20) sb.Append("\\u").Append(((int)c).ToString("x4", System.Globalization.CultureInfo.InvariantCulture));
                    else sb.Append(c);
                    break;
            }
        }
        return sb.Append('"').ToString();
    }
}
