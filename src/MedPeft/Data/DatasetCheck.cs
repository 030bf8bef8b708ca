using System.Globalization;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using SkiaSharp;

namespace MedPeft.Data;

/// <summary>Options of <see cref="DatasetCheck.Run"/>.</summary>
public sealed record DatasetCheckOptions
{
    /// <summary>Reader options (SLAKE language, VQA-RAD layout and carve-out).</summary>
    public ReaderOptions Reader { get; init; } = ReaderOptions.Default;

    /// <summary>Decode every distinct image once (default); false only checks that the files exist.</summary>
    public bool DecodeImages { get; init; } = true;

    /// <summary>Images decoded in parallel (default: processor count).</summary>
    public int MaxDegreeOfParallelism { get; init; } = Environment.ProcessorCount;

    /// <summary>How many missing / undecodable paths to list per split (default 3).</summary>
    public int MaxExamples { get; init; } = 3;

    /// <summary>Told, now and then, how many of the distinct images have been checked.</summary>
    public IProgress<ImageCheckProgress>? Progress { get; init; }
}

/// <summary>Progress of the image pass: <paramref name="Checked"/> of <paramref name="Total"/> distinct images.</summary>
public readonly record struct ImageCheckProgress(int Checked, int Total);

/// <summary>What became of one image file.</summary>
public enum ImageStatus
{
    Ok,
    Missing,
    Undecodable,
}

/// <summary>The check of one split. Image counts are over the split's distinct image files.</summary>
public sealed record SplitCheck
{
    /// <summary>Canonical split name (train / validation / test).</summary>
    public required string Split { get; init; }

    /// <summary>Samples the reader yielded (after skips).</summary>
    public int Samples { get; init; }

    /// <summary>Distinct images that exist on disk (decodable or not).</summary>
    public int ImagesFound { get; init; }

    /// <summary>Distinct images that do not exist.</summary>
    public int ImagesMissing { get; init; }

    /// <summary>Distinct images that exist but SkiaSharp cannot fully decode (a subset of <see cref="ImagesFound"/>); null when decoding was off.</summary>
    public int? ImagesUndecodable { get; init; }

    /// <summary>VQA only: closed questions (see <see cref="DatasetCheck.IsClosed"/>); null for report datasets.</summary>
    public int? Closed { get; init; }

    /// <summary>VQA only: open questions; null for report datasets.</summary>
    public int? Open { get; init; }

    /// <summary>Entries the reader skipped on purpose, by reason.</summary>
    public IReadOnlyDictionary<string, int> Skipped { get; init; } = new Dictionary<string, int>();

    /// <summary>The reader's error when the split could not be read (completely); counts cover what was read before it.</summary>
    public string? Error { get; init; }

    public IReadOnlyList<string> MissingExamples { get; init; } = [];
    public IReadOnlyList<string> UndecodableExamples { get; init; } = [];

    /// <summary>True when this split has an error, a missing image or an undecodable one.</summary>
    public bool HasProblems => Error is not null || ImagesMissing > 0 || ImagesUndecodable > 0;
}

/// <summary>The result of <see cref="DatasetCheck.Run"/>: one <see cref="SplitCheck"/> per split, train / validation / test.</summary>
public sealed class DatasetCheckResult(string format, string root, DatasetTask task, IReadOnlyList<SplitCheck> splits)
{
    public string Format { get; } = format;
    public string Root { get; } = root;
    public DatasetTask Task { get; } = task;
    public IReadOnlyList<SplitCheck> Splits { get; } = splits;

    public SplitCheck this[string split]
    {
        get
        {
            string s = DatasetFormats.CanonicalSplit(split);
            return Splits.First(c => c.Split == s);
        }
    }

    public bool HasProblems => Splits.Any(s => s.HasProblems);

    /// <summary>
    /// An object keyed by split:
    /// <c>{"train":{"samples":…,"images_found":…,"images_missing":…,"images_undecodable":…,"closed":…,"open":…,"skipped":{"q_lang=zh":1}}, …}</c>.
    /// <c>closed</c>/<c>open</c> appear for VQA datasets only, <c>images_undecodable</c> only when images were decoded;
    /// <c>error</c>, <c>missing_examples</c> and <c>undecodable_examples</c> only when there is something to say.
    /// Non-ASCII text is written unescaped.
    /// </summary>
    public string ToJson(bool indented = true)
    {
        var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = indented, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
            WriteJson(w);
        return Encoding.UTF8.GetString(buffer.ToArray());
    }

    /// <summary>Writes the object of <see cref="ToJson"/> to a writer (e.g. to embed it in a larger document).</summary>
    public void WriteJson(Utf8JsonWriter w)
    {
        w.WriteStartObject();
        foreach (var s in Splits)
        {
            w.WriteStartObject(s.Split);
            w.WriteNumber("samples", s.Samples);
            w.WriteNumber("images_found", s.ImagesFound);
            w.WriteNumber("images_missing", s.ImagesMissing);
            if (s.ImagesUndecodable is int u) w.WriteNumber("images_undecodable", u);
            if (s.Closed is int c) w.WriteNumber("closed", c);
            if (s.Open is int o) w.WriteNumber("open", o);
            w.WriteStartObject("skipped");
            foreach (var (reason, n) in s.Skipped) w.WriteNumber(reason, n);
            w.WriteEndObject();
            if (s.Error is not null) w.WriteString("error", s.Error);
            WriteList(w, "missing_examples", s.MissingExamples);
            WriteList(w, "undecodable_examples", s.UndecodableExamples);
            w.WriteEndObject();
        }
        w.WriteEndObject();
    }

    private static void WriteList(Utf8JsonWriter w, string name, IReadOnlyList<string> items)
    {
        if (items.Count == 0) return;
        w.WriteStartArray(name);
        foreach (var i in items) w.WriteStringValue(i);
        w.WriteEndArray();
    }

    /// <summary>
    /// A plain-text table, one row per split, then one line per error and example problem path:
    /// <code>
    /// split       samples  images  missing  undecodable  closed  open  skipped
    /// train             6       2        0            0       2     4  q_lang=zh: 1
    /// </code>
    /// </summary>
    public string ToTable()
    {
        bool vqa = Task == DatasetTask.Vqa;
        var header = new List<string> { "split", "samples", "images", "missing" };
        if (Splits.Any(s => s.ImagesUndecodable is not null)) header.Add("undecodable");
        if (vqa) header.AddRange(["closed", "open"]);
        header.Add("skipped");
        bool hasUndecodable = header.Contains("undecodable");

        var rows = new List<string[]> { header.ToArray() };
        foreach (var s in Splits)
        {
            var r = new List<string> { s.Split, N(s.Samples), N(s.ImagesFound), N(s.ImagesMissing) };
            if (hasUndecodable) r.Add(s.ImagesUndecodable is int u ? N(u) : "-");
            if (vqa) r.AddRange([s.Closed is int c ? N(c) : "-", s.Open is int o ? N(o) : "-"]);
            r.Add(s.Skipped.Count == 0 ? "-" : string.Join(", ", s.Skipped.Select(kv => $"{kv.Key}: {N(kv.Value)}")));
            rows.Add(r.ToArray());
        }

        int cols = header.Count;
        var widths = new int[cols];
        foreach (var r in rows)
            for (int i = 0; i < cols; i++) widths[i] = Math.Max(widths[i], r[i].Length);

        var sb = new StringBuilder();
        foreach (var r in rows)
        {
            var line = new StringBuilder();
            for (int i = 0; i < cols; i++)
            {
                if (i > 0) line.Append("  ");
                bool left = i == 0 || i == cols - 1; // split name and skip reasons are text
                line.Append(left ? r[i].PadRight(widths[i]) : r[i].PadLeft(widths[i]));
            }
            sb.Append(line.ToString().TrimEnd()).Append('\n');
        }
        foreach (var s in Splits)
        {
            if (s.Error is not null) sb.Append($"{s.Split}: error: {s.Error}\n");
            foreach (var p in s.MissingExamples) sb.Append($"{s.Split}: missing image: {p}\n");
            foreach (var p in s.UndecodableExamples) sb.Append($"{s.Split}: undecodable image: {p}\n");
        }
        return sb.ToString();
    }

    private static string N(int n) => n.ToString(CultureInfo.InvariantCulture);
}

/// <summary>
/// Checks a downloaded dataset: per split, the samples the reader yields, the images found /
/// missing / undecodable (each distinct image decoded once with SkiaSharp, across all splits),
/// closed / open question counts (VQA) and the entries skipped with their reasons.
/// </summary>
public static class DatasetCheck
{
    /// <summary>
    /// Runs the check. An unknown format or a root that does not hold the format's layout throws
    /// a <see cref="MedPeftException"/>; a split that cannot be read (missing file, bad record) is
    /// reported in that split's <see cref="SplitCheck.Error"/> and the other splits are still checked.
    /// </summary>
    public static DatasetCheckResult Run(string format, string root, DatasetCheckOptions? options = null, CancellationToken cancellationToken = default)
    {
        options ??= new DatasetCheckOptions();
        var info = DatasetFormats.Get(format);
        DatasetFormats.ResolveRoot(info.Name, root, options.Reader);
        bool vqa = info.Task == DatasetTask.Vqa;

        var partial = new List<(string Split, int Samples, int Closed, int Open, HashSet<string> Images, SkipLog Skips, string? Error)>();
        foreach (string split in Splits.All)
        {
            var images = new HashSet<string>(StringComparer.Ordinal);
            var skips = new SkipLog();
            int samples = 0, closed = 0, open = 0;
            string? error = null;
            try
            {
                if (vqa)
                {
                    foreach (var s in DatasetFormats.ReadVqa(info.Name, root, split, options.Reader, skips))
                    {
                        cancellationToken.ThrowIfCancellationRequested();
                        samples++;
                        images.Add(s.ImagePath);
                        if (IsClosed(s)) closed++;
                        else open++;
                    }
                }
                else
                {
                    foreach (var r in DatasetFormats.ReadReports(info.Name, root, split, options.Reader, skips))
                    {
                        cancellationToken.ThrowIfCancellationRequested();
                        samples++;
                        foreach (var p in r.ImagePaths) images.Add(p);
                    }
                }
            }
            catch (MedPeftException e)
            {
                error = e.Message;
            }
            partial.Add((split, samples, closed, open, images, skips, error));
        }

        var status = CheckImages(partial.SelectMany(p => p.Images).Distinct(StringComparer.Ordinal).ToList(), options, cancellationToken);

        var results = new List<SplitCheck>();
        foreach (var p in partial)
        {
            var sorted = p.Images.OrderBy(x => x, StringComparer.Ordinal).ToList();
            var missing = sorted.Where(i => status[i] == ImageStatus.Missing).ToList();
            var bad = sorted.Where(i => status[i] == ImageStatus.Undecodable).ToList();
            results.Add(new SplitCheck
            {
                Split = p.Split,
                Samples = p.Samples,
                ImagesFound = sorted.Count - missing.Count,
                ImagesMissing = missing.Count,
                ImagesUndecodable = options.DecodeImages ? bad.Count : null,
                Closed = vqa ? p.Closed : null,
                Open = vqa ? p.Open : null,
                Skipped = p.Skips.Counts,
                Error = p.Error,
                MissingExamples = missing.Take(options.MaxExamples).ToArray(),
                UndecodableExamples = bad.Take(options.MaxExamples).ToArray(),
            });
        }
        return new DatasetCheckResult(info.Name, Path.GetFullPath(root), info.Task, results);
    }

    /// <summary>
    /// Closed question: <see cref="VqaSample.AnswerType"/> is CLOSED when the dataset gives a type;
    /// otherwise (PathVQA) the trimmed, lower-cased answer is yes or no.
    /// </summary>
    public static bool IsClosed(VqaSample sample)
    {
        if (sample.AnswerType is { } t) return string.Equals(t.Trim(), "CLOSED", StringComparison.OrdinalIgnoreCase);
        string a = sample.Answer.Trim().ToLowerInvariant();
        return a is "yes" or "no";
    }

    /// <summary>Missing, undecodable (no codec, or SkiaSharp's full decode does not succeed — truncated files included), or OK.</summary>
    public static ImageStatus CheckImage(string path, bool decode = true)
    {
        if (!File.Exists(path)) return ImageStatus.Missing;
        if (!decode) return ImageStatus.Ok;
        return TryDecode(path) ? ImageStatus.Ok : ImageStatus.Undecodable;
    }

    private static bool TryDecode(string path)
    {
        try
        {
            using var codec = SKCodec.Create(path, out _);
            if (codec is null) return false;
            var info = codec.Info;
            if (info.Width <= 0 || info.Height <= 0) return false;
            using var bitmap = new SKBitmap(info);
            if (bitmap.GetPixels() == IntPtr.Zero) return false;
            // SKBitmap.Decode accepts IncompleteInput (a truncated file, grey-filled); we do not.
            return codec.GetPixels(info, bitmap.GetPixels()) == SKCodecResult.Success;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or InvalidOperationException)
        {
            return false;
        }
    }

    private static Dictionary<string, ImageStatus> CheckImages(List<string> paths, DatasetCheckOptions options, CancellationToken ct)
    {
        var result = new ImageStatus[paths.Count];
        int done = 0;
        int step = Math.Max(1, paths.Count / 100);
        var parallel = new ParallelOptions { MaxDegreeOfParallelism = Math.Max(1, options.MaxDegreeOfParallelism), CancellationToken = ct };
        Parallel.For(0, paths.Count, parallel, i =>
        {
            result[i] = CheckImage(paths[i], options.DecodeImages);
            int d = Interlocked.Increment(ref done);
            if (options.Progress is not null && (d % step == 0 || d == paths.Count))
                options.Progress.Report(new ImageCheckProgress(d, paths.Count));
        });
        var map = new Dictionary<string, ImageStatus>(paths.Count, StringComparer.Ordinal);
        for (int i = 0; i < paths.Count; i++) map[paths[i]] = result[i];
        return map;
    }
}
