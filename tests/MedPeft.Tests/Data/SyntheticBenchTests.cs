using System.Diagnostics;
using System.Text.Json;
using MedPeft.Data;
using MedPeft.Data.Synthetic;
using SkiaSharp;

namespace MedPeft.Tests.Data;

/// <summary>Generates a small benchmark twice (same options) once for the whole class.</summary>
public sealed class SyntheticBenchFixture : IDisposable
{
    public static readonly SyntheticBenchOptions Small = new()
    {
        Seed = 99,
        ImageSize = 32,
        TrainImages = 40,
        ValidationImages = 12,
        TestImages = 16,
        PretrainImages = 24,
        ReportTrain = 8,
        ReportVal = 3,
        ReportTest = 4,
        QuestionsPerImage = 4,
    };

    public SyntheticBenchFixture()
    {
        Root = Path.Combine(Path.GetTempPath(), $"medpeft-synth-{Environment.ProcessId}-{Guid.NewGuid():N}");
        A = Path.Combine(Root, "a");
        B = Path.Combine(Root, "b");
        ManifestA = SyntheticBench.EnsureGenerated(A, Small);
        ManifestB = SyntheticBench.EnsureGenerated(B, Small);
    }

    public string Root { get; }
    public string A { get; }
    public string B { get; }
    public SyntheticBenchManifest ManifestA { get; }
    public SyntheticBenchManifest ManifestB { get; }

    public void Dispose()
    {
        try { Directory.Delete(Root, recursive: true); } catch (IOException) { }
    }
}

public class SyntheticBenchTests(SyntheticBenchFixture fx) : IClassFixture<SyntheticBenchFixture>
{
    private static readonly string[] SlakeFiles = ["train.json", "validate.json", "test.json"];
    private static readonly string[] SlakeKeys =
        ["img_id", "img_name", "question", "answer", "q_lang", "location", "modality", "answer_type", "base_type", "content_type", "triple", "qid"];
    private static readonly HashSet<string> ContentTypes = ["Organ", "Position", "Abnormality", "Modality", "Size", "Quantity", "Plane"];

    /// <summary>The default-size plan (text only, no pixels): large enough for balance statistics.</summary>
    private static readonly Lazy<SyntheticBenchPlan> DefaultPlan = new(() => SyntheticBench.Plan(SyntheticBenchOptions.Default));

    private static string Rel(string root, string path) => Path.GetRelativePath(root, path).Replace('\\', '/');

    private static List<JsonElement> ReadSlake(string dir, string file)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(SyntheticBench.SlakeRoot(dir), file)));
        return doc.RootElement.EnumerateArray().Select(e => e.Clone()).ToList();
    }

    // ------------------------------------------------------------------ determinism

    [Fact]
    public void Same_seed_and_options_give_byte_identical_files()
    {
        var filesA = Directory.EnumerateFiles(fx.A, "*", SearchOption.AllDirectories).Select(p => Rel(fx.A, p)).Order(StringComparer.Ordinal).ToList();
        var filesB = Directory.EnumerateFiles(fx.B, "*", SearchOption.AllDirectories).Select(p => Rel(fx.B, p)).Order(StringComparer.Ordinal).ToList();
        Assert.Equal(filesA, filesB);
        var o = SyntheticBenchFixture.Small;
        int expectedImages = o.TrainImages + o.ValidationImages + o.TestImages + o.PretrainImages + 2 * (o.ReportTrain + o.ReportVal + o.ReportTest);
        Assert.Equal(expectedImages, filesA.Count(f => f.EndsWith(".jpg", StringComparison.Ordinal) || f.EndsWith(".png", StringComparison.Ordinal)));
        foreach (var f in filesA)
            Assert.True(File.ReadAllBytes(Path.Combine(fx.A, f)).AsSpan().SequenceEqual(File.ReadAllBytes(Path.Combine(fx.B, f))), $"{f} differs between two generations");
        Assert.Equal(fx.ManifestA, fx.ManifestB);
    }

    [Fact]
    public void Another_seed_changes_images_and_questions()
    {
        var other = SyntheticBenchFixture.Small with { Seed = 100 };
        var planA = SyntheticBench.Plan(SyntheticBenchFixture.Small);
        var planB = SyntheticBench.Plan(other);
        Assert.NotEqual(planA.Questions.Select(q => q.Question + q.Answer), planB.Questions.Select(q => q.Question + q.Answer));
        var study = planA.VqaImages[0].Study;
        var imgA = SyntheticImages.RenderJpeg(study, 32, new SynthRandom(planA.VqaImages[0].RenderSeed));
        var imgB = SyntheticImages.RenderJpeg(study, 32, new SynthRandom(planB.VqaImages[0].RenderSeed));
        Assert.False(imgA.AsSpan().SequenceEqual(imgB), "different render seeds should jitter the image");
    }

    [Fact]
    public void Plan_is_deterministic_and_independent_of_other_split_sizes()
    {
        var a = SyntheticBench.Plan(SyntheticBenchFixture.Small);
        var b = SyntheticBench.Plan(SyntheticBenchFixture.Small with { TestImages = 30, PretrainImages = 5 });
        // Train images are drawn from their own streams: growing another split leaves them as they were.
        var trainA = a.VqaImages.Where(i => i.Split == Splits.Train).ToList();
        var trainB = b.VqaImages.Where(i => i.Split == Splits.Train).ToList();
        Assert.Equal(trainA.Select(i => i.RenderSeed), trainB.Select(i => i.RenderSeed));
        Assert.Equal(trainA.Select(i => i.Study.Abnormalities.Count), trainB.Select(i => i.Study.Abnormalities.Count));
        Assert.Equal(a.Questions.Where(q => q.Split == Splits.Train), b.Questions.Where(q => q.Split == Splits.Train));
    }

    // ------------------------------------------------------------------ SLAKE format

    [Fact]
    public void Slake_files_follow_the_slake_format()
    {
        int expectedQid = 0;
        var o = SyntheticBenchFixture.Small;
        foreach (var file in SlakeFiles)
        {
            string text = File.ReadAllText(Path.Combine(SyntheticBench.SlakeRoot(fx.A), file));
            Assert.DoesNotContain('\n', text);                 // one line, no trailing newline
            Assert.StartsWith("[{\"img_id\": ", text);          // json.dumps separators
            Assert.Contains("\"triple\": [\"vhead\", \"_\", \"_\"], ", text);
            var records = ReadSlake(fx.A, file);
            Assert.NotEmpty(records);
            foreach (var r in records)
            {
                Assert.Equal(SlakeKeys, r.EnumerateObject().Select(p => p.Name));
                Assert.Equal(JsonValueKind.Number, r.GetProperty("img_id").ValueKind);
                Assert.Equal(JsonValueKind.Number, r.GetProperty("qid").ValueKind);
                int imgId = r.GetProperty("img_id").GetInt32();
                Assert.Equal($"xmlab{imgId}/source.jpg", r.GetProperty("img_name").GetString());
                Assert.Equal("en", r.GetProperty("q_lang").GetString());
                Assert.Equal("vqa", r.GetProperty("base_type").GetString());
                Assert.Contains(r.GetProperty("answer_type").GetString(), new[] { "OPEN", "CLOSED" });
                Assert.Contains(r.GetProperty("content_type").GetString()!, ContentTypes);
                Assert.Contains(r.GetProperty("modality").GetString(), new[] { "X-Ray", "MRI", "CT" });
                Assert.Contains(r.GetProperty("location").GetString(), new[] { "Lung", "Brain_Tissue", "Abdomen" });
                Assert.Equal(["vhead", "_", "_"], r.GetProperty("triple").EnumerateArray().Select(t => t.GetString()));
                Assert.Equal(expectedQid++, r.GetProperty("qid").GetInt32());

                string question = r.GetProperty("question").GetString()!;
                string answer = r.GetProperty("answer").GetString()!;
                Assert.EndsWith("?", question);
                Assert.Equal(answer.Trim().ToLowerInvariant(), answer);
                Assert.InRange(answer.Split(' ').Length, 1, 4);
                Assert.True(File.Exists(Path.Combine(SyntheticBench.SlakeRoot(fx.A), "imgs", $"xmlab{imgId}", "source.jpg")));
            }
        }
        Assert.Equal((o.TrainImages + o.ValidationImages + o.TestImages) * o.QuestionsPerImage, expectedQid);
    }

    [Fact]
    public void Yes_no_questions_are_closed_and_open_questions_are_not_yes_no()
    {
        foreach (var q in DefaultPlan.Value.Questions)
        {
            if (q.Answer is "yes" or "no") Assert.Equal("CLOSED", q.AnswerType);
            if (q.AnswerType == "CLOSED" && q.Answer is not ("yes" or "no"))
                Assert.Contains(" or ", q.Question); // a closed choice names its options, as SLAKE's do
        }
    }

    [Fact]
    public void Slake_reader_reads_the_generated_files()
    {
        var o = SyntheticBenchFixture.Small;
        var train = SlakeReader.Read(fx.A, Splits.Train).ToList();
        var validation = SlakeReader.Read(fx.A, Splits.Validation).ToList();
        var test = SlakeReader.Read(fx.A, Splits.Test).ToList();
        Assert.Equal(o.TrainImages * o.QuestionsPerImage, train.Count);
        Assert.Equal(o.ValidationImages * o.QuestionsPerImage, validation.Count);
        Assert.Equal(o.TestImages * o.QuestionsPerImage, test.Count);
        Assert.All(train.Concat(validation).Concat(test), s =>
        {
            Assert.True(File.Exists(s.ImagePath), s.ImagePath);
            Assert.Contains(s.AnswerType, new[] { "OPEN", "CLOSED" });
        });
    }

    [Fact]
    public void Vqa_images_are_disjoint_across_splits_and_from_the_pretraining_pool()
    {
        var perSplit = SlakeFiles.Select(f => ReadSlake(fx.A, f).Select(r => r.GetProperty("img_name").GetString()!).ToHashSet()).ToList();
        for (int i = 0; i < perSplit.Count; i++)
            for (int j = i + 1; j < perSplit.Count; j++)
                Assert.Empty(perSplit[i].Intersect(perSplit[j]));
        var o = SyntheticBenchFixture.Small;
        Assert.Equal([o.TrainImages, o.ValidationImages, o.TestImages], perSplit.Select(s => s.Count));

        var captions = File.ReadAllLines(SyntheticBench.CaptionsFile(fx.A)).Select(l => JsonDocument.Parse(l).RootElement.GetProperty("image").GetString()!).ToList();
        Assert.All(captions, c => Assert.StartsWith("pretrain/", c));
        Assert.Equal(captions.Count, captions.Distinct().Count());
    }

    // ------------------------------------------------------------------ images

    [Fact]
    public void Generated_images_decode_at_the_requested_size()
    {
        int size = SyntheticBenchFixture.Small.ImageSize;
        var images = Directory.EnumerateFiles(fx.A, "*.*", SearchOption.AllDirectories).Where(p => p.EndsWith(".jpg") || p.EndsWith(".png")).ToList();
        Assert.NotEmpty(images);
        foreach (var path in images)
        {
            using var codec = SKCodec.Create(path);
            Assert.NotNull(codec);
            Assert.Equal(size, codec.Info.Width);
            Assert.Equal(size, codec.Info.Height);
            if (path.EndsWith(".png")) Assert.Equal(SKColorType.Gray8, codec.Info.ColorType); // IU-Xray PNGs are grayscale
        }
    }

    [Theory]
    [InlineData(32)]
    [InlineData(64)]
    [InlineData(128)]
    public void Every_modality_and_view_renders_at_any_size(int size)
    {
        var rng = SynthRandom.Derive(5, "sizes", size);
        var studies = new[] { StudySampler.SampleChest(rng), StudySampler.SampleBrain(rng), StudySampler.SampleAbdomen(rng) };
        foreach (var study in studies)
        {
            var views = study.Modality == SynthModality.ChestXray ? new[] { SynthView.Frontal, SynthView.Lateral } : [SynthView.Frontal];
            foreach (var view in views)
            {
                using var bmp = SKBitmap.Decode(SyntheticImages.RenderPng(study, size, new SynthRandom(7), view));
                Assert.Equal(size, bmp.Width);
                Assert.Equal(size, bmp.Height);
                // Real content: not flat.
                var px = SyntheticImages.RenderGray(study, size, new SynthRandom(7), view);
                Assert.True(px.Max() - px.Min() > 100, $"{study.Modality} {view} at {size}px has too little contrast");
            }
        }
    }

    /// <summary>
    /// Radiological convention: the patient's right is on the image left. Rendering the same
    /// study with and without a finding (same seed), the pixels change mostly on the expected
    /// half: a right effusion or pneumothorax on the image left, a left-hemisphere tumour on the
    /// image right, a right kidney cyst on the image left.
    /// </summary>
    [Fact]
    public void Findings_follow_the_radiological_left_right_convention()
    {
        const int size = 64;
        static (double Left, double Right) Change(SyntheticStudy with, SyntheticStudy without, int seed)
        {
            var a = SyntheticImages.RenderGray(with, size, SynthRandom.Derive(seed, "convention"));
            var b = SyntheticImages.RenderGray(without, size, SynthRandom.Derive(seed, "convention"));
            double left = 0, right = 0;
            for (int y = 0; y < size; y++)
                for (int x = 0; x < size; x++)
                {
                    double d = Math.Abs(a[y * size + x] - b[y * size + x]);
                    if (x < size / 2) left += d; else right += d;
                }
            return (left, right);
        }
        static SyntheticStudy Chest(Side? effusion, Side? ptx) =>
            new(SynthModality.ChestXray, new ChestFindings(0, Side.Right, LungZone.Upper, effusion, false, ptx), null, null);
        static SyntheticStudy Brain(params Side[] lesions) => new(SynthModality.BrainMri, null, new BrainFindings(lesions), null);
        static SyntheticStudy Abdomen(Side? cyst) => new(SynthModality.AbdomenCt, null, null, new AbdomenFindings(0, cyst));

        for (int seed = 0; seed < 10; seed++)
        {
            foreach (var side in new[] { Side.Left, Side.Right })
            {
                bool imageLeft = side == Side.Right;
                void Expect((double Left, double Right) change, string what)
                {
                    double expected = imageLeft ? change.Left : change.Right, other = imageLeft ? change.Right : change.Left;
                    Assert.True(expected > 4 * other, $"{what} on the patient's {side} (seed {seed}): change {expected:F0} on the expected half vs {other:F0}");
                }
                Expect(Change(Chest(side, null), Chest(null, null), seed), "effusion");
                Expect(Change(Chest(null, side), Chest(null, null), seed), "pneumothorax");
                Expect(Change(Brain(side), Brain(), seed), "brain tumour");
                Expect(Change(Abdomen(side), Abdomen(null), seed), "kidney cyst");
            }
        }
    }

    // ------------------------------------------------------------------ balance

    [Fact]
    public void Every_closed_two_answer_kind_is_balanced_40_to_60_percent()
    {
        foreach (var split in Splits.All)
        {
            var groups = DefaultPlan.Value.Questions.Where(q => q.Split == split && q.AnswerType == "CLOSED").GroupBy(q => q.Kind);
            foreach (var g in groups)
            {
                if (g.Count() < 10) continue; // too few to measure a proportion
                var answers = g.GroupBy(q => q.Answer).ToList();
                Assert.Equal(2, answers.Count);
                double share = answers.Max(a => a.Count()) / (double)g.Count();
                Assert.True(share <= 0.6, $"{split} {g.Key}: {share:P0} {answers[0].Key} of {g.Count()}");
            }
        }
    }

    [Fact]
    public void Every_open_kind_has_a_majority_answer_below_60_percent()
    {
        foreach (var split in Splits.All)
        {
            var groups = DefaultPlan.Value.Questions.Where(q => q.Split == split && q.AnswerType == "OPEN").GroupBy(q => q.Kind);
            foreach (var g in groups)
            {
                if (g.Count() < 10) continue;
                double share = g.GroupBy(q => q.Answer).Max(a => a.Count()) / (double)g.Count();
                Assert.True(share < 0.6, $"{split} {g.Key}: majority answer is {share:P0} of {g.Count()}");
            }
        }
    }

    [Fact]
    public void Balance_also_holds_in_the_small_generated_files()
    {
        // Read back from disk (not the plan) and group by question kind via the plan's qids.
        var plan = SyntheticBench.Plan(SyntheticBenchFixture.Small);
        var kindOf = plan.Questions.ToDictionary(q => q.Qid, q => q.Kind);
        var all = new List<JsonElement>();
        foreach (var file in SlakeFiles)
        {
            var records = ReadSlake(fx.A, file);
            all.AddRange(records);
            // The balancer works per split: within a file a kind's answers differ by about one question.
            foreach (var g in records.GroupBy(r => kindOf[r.GetProperty("qid").GetInt32()]))
            {
                if (g.Count() < 8) continue;
                double share = g.GroupBy(r => r.GetProperty("answer").GetString()).Max(a => a.Count()) / (double)g.Count();
                Assert.True(share <= 0.625, $"{file} {g.Key}: majority answer is {share:P0} of {g.Count()}");
            }
        }
        Assert.Equal(plan.Questions.Select(q => q.Answer), all.Select(r => r.GetProperty("answer").GetString()));
    }

    [Fact]
    public void A_constant_answer_scores_poorly()
    {
        foreach (var split in Splits.All)
        {
            var qs = DefaultPlan.Value.Questions.Where(q => q.Split == split).ToList();
            double best = qs.GroupBy(q => q.Answer).Max(a => a.Count()) / (double)qs.Count;
            Assert.True(best < 0.4, $"{split}: the commonest answer is {best:P0} of all questions");
            var closed = qs.Where(q => q.AnswerType == "CLOSED").ToList();
            double bestClosed = closed.GroupBy(q => q.Answer).Max(a => a.Count()) / (double)closed.Count;
            Assert.True(bestClosed <= 0.55, $"{split}: the commonest closed answer is {bestClosed:P0}");
        }
    }

    [Fact]
    public void Question_kinds_cover_the_slake_content_types_and_vary_their_wording()
    {
        var qs = DefaultPlan.Value.Questions;
        Assert.Equal(ContentTypes.Order(), qs.Select(q => q.ContentType).Distinct().Order());
        foreach (var g in qs.GroupBy(q => q.Kind))
            Assert.True(g.Select(q => q.Question).Distinct().Count() >= 2, $"{g.Key} has a single wording");
        Assert.True(qs.Select(q => q.Kind).Distinct().Count() >= 25);
        // The open answers named in the brief exist.
        var answers = qs.Select(q => q.Answer).ToHashSet();
        foreach (var a in new[] { "left upper lung", "right lower lung", "x-ray", "mri", "ct", "lung", "heart", "brain", "2", "left", "right", "pleural effusion" })
            Assert.Contains(a, answers);
    }

    // ------------------------------------------------------------------ captions, reports, words

    [Fact]
    public void Captions_are_statements_about_pretraining_images()
    {
        var lines = File.ReadAllLines(SyntheticBench.CaptionsFile(fx.A));
        Assert.Equal(SyntheticBenchFixture.Small.PretrainImages, lines.Length);
        foreach (var line in lines)
        {
            var obj = JsonDocument.Parse(line).RootElement;
            Assert.Equal(["image", "caption"], obj.EnumerateObject().Select(p => p.Name));
            string caption = obj.GetProperty("caption").GetString()!;
            Assert.True(File.Exists(Path.Combine(fx.A, obj.GetProperty("image").GetString()!)));
            Assert.DoesNotContain("?", caption);
            Assert.Equal(caption.ToLowerInvariant(), caption);
            Assert.Matches("x-ray|radiograph|mri|ct", caption);
        }
        // Findings make it into words.
        var plan = DefaultPlan.Value;
        foreach (var c in plan.Captions.Where(c => c.Study.Chest is { Nodules: 2 }))
            Assert.Contains("two nodules", c.Caption);
        foreach (var c in plan.Captions.Where(c => c.Study.Chest is { Effusion: Side.Right }))
            Assert.Matches("right pleural|right pleural space", c.Caption);
    }

    [Fact]
    public void Iu_xray_annotation_follows_r2gen_layout()
    {
        string iu = SyntheticBench.IuXrayRoot(fx.A);
        string text = File.ReadAllText(Path.Combine(iu, "annotation.json"));
        Assert.DoesNotContain('\n', text);
        using var doc = JsonDocument.Parse(text);
        Assert.Equal(["train", "val", "test"], doc.RootElement.EnumerateObject().Select(p => p.Name));
        var o = SyntheticBenchFixture.Small;
        var expected = new Dictionary<string, int> { ["train"] = o.ReportTrain, ["val"] = o.ReportVal, ["test"] = o.ReportTest };
        var ids = new HashSet<string>();
        foreach (var split in doc.RootElement.EnumerateObject())
        {
            Assert.Equal(expected[split.Name], split.Value.GetArrayLength());
            foreach (var e in split.Value.EnumerateArray())
            {
                Assert.Equal(["id", "report", "image_path", "split"], e.EnumerateObject().Select(p => p.Name));
                string id = e.GetProperty("id").GetString()!;
                Assert.Matches(@"^CXR\d+_IM-\d{4}(-\d{4})?$", id);
                Assert.True(ids.Add(id), $"duplicate id {id}");
                Assert.Equal(split.Name, e.GetProperty("split").GetString());
                Assert.Equal([$"{id}/0.png", $"{id}/1.png"], e.GetProperty("image_path").EnumerateArray().Select(p => p.GetString()));
                foreach (var p in e.GetProperty("image_path").EnumerateArray())
                    Assert.True(File.Exists(Path.Combine(iu, "images", p.GetString()!)));
                string report = e.GetProperty("report").GetString()!;
                int sentences = report.Split(". ").Length;
                Assert.InRange(sentences, 2, 5);
                Assert.EndsWith(".", report);
            }
        }
        var read = R2GenAnnotationReader.Read(fx.A, Splits.Train, R2GenDataset.IuXray).ToList();
        Assert.Equal(o.ReportTrain, read.Count);
        Assert.All(read, r => Assert.Equal(2, r.ImagePaths.Count));
    }

    [Fact]
    public void Reports_state_the_findings()
    {
        foreach (var r in DefaultPlan.Value.Reports)
        {
            var f = r.Study.Chest!;
            string lower = r.Report.ToLowerInvariant();
            Assert.Equal(f.Effusion is not null, lower.Contains("pleural effusion") && !lower.Contains("no pleural effusion") && !lower.Contains("no effusion"));
            Assert.Equal(f.Nodules > 0, lower.Contains("nodul") && !lower.Contains("no focal nodule") && !lower.Contains("no pulmonary nodules"));
            Assert.Equal(f.Cardiomegaly, lower.Contains("enlarged") || lower.Contains("cardiomegaly"));
            if (f.Pneumothorax is { } side) Assert.Contains($"{(side == Side.Left ? "left" : "right")} pneumothorax", lower);
        }
    }

    [Fact]
    public void Words_file_lists_every_token_of_the_text()
    {
        var words = File.ReadAllLines(SyntheticBench.WordsFile(fx.A));
        Assert.Equal(SyntheticBench.Vocabulary(SyntheticBenchFixture.Small), words);
        Assert.Equal(words.Order(StringComparer.Ordinal), words);
        var set = words.ToHashSet();
        var plan = SyntheticBench.Plan(SyntheticBenchFixture.Small);
        var texts = plan.Questions.SelectMany(q => new[] { q.Question, q.Answer }).Concat(plan.Captions.Select(c => c.Caption)).Concat(plan.Reports.Select(r => r.Report));
        foreach (var t in texts)
            foreach (var w in t.ToLowerInvariant().Split([' ', '.', ',', '?', '-'], StringSplitOptions.RemoveEmptyEntries))
                Assert.Contains(w, set);
        Assert.Contains("?", set);
        Assert.Contains("pneumothorax", SyntheticBench.Vocabulary(SyntheticBenchOptions.Default));
    }

    // ------------------------------------------------------------------ EnsureGenerated

    [Fact]
    public void Ensure_generated_returns_at_once_when_the_manifest_matches()
    {
        string manifest = Path.Combine(fx.A, SyntheticBench.ManifestFileName);
        var before = File.GetLastWriteTimeUtc(manifest);
        var again = SyntheticBench.EnsureGenerated(fx.A, SyntheticBenchFixture.Small);   // reused: nothing rewritten (checked below)
        Assert.Equal(fx.ManifestA, again);
        Assert.Equal(before, File.GetLastWriteTimeUtc(manifest));
        Assert.Equal(SyntheticBench.GeneratorVersion, again.Version);
        Assert.Equal(SyntheticBenchFixture.Small, again.Options);
        Assert.Equal(SyntheticBenchFixture.Small.TrainImages * 4, again.Counts.TrainQuestions);
        Assert.DoesNotContain(Directory.EnumerateDirectories(fx.Root).Select(Path.GetFileName), n => n!.StartsWith("a.", StringComparison.Ordinal));
    }

    [Fact]
    public void Ensure_generated_regenerates_on_other_options_and_replaces_an_incomplete_folder()
    {
        string dir = Path.Combine(fx.Root, "regen");
        var tiny = SyntheticBenchFixture.Small with { TrainImages = 6, ValidationImages = 2, TestImages = 2, PretrainImages = 3, ReportTrain = 2, ReportVal = 1, ReportTest = 1 };
        SyntheticBench.EnsureGenerated(dir, tiny);
        File.WriteAllText(Path.Combine(dir, "vocab.txt"), "cached by a consumer");

        var other = SyntheticBench.EnsureGenerated(dir, tiny with { Seed = 7 });
        Assert.Equal(7, other.Options.Seed);
        Assert.Equal(7, SyntheticBench.ReadManifest(dir)!.Options.Seed);
        Assert.False(File.Exists(Path.Combine(dir, "vocab.txt")), "a cache built on the old benchmark must go with it");

        // A folder that lost its manifest (e.g. interrupted copy) is not complete: it is regenerated.
        File.Delete(Path.Combine(dir, SyntheticBench.ManifestFileName));
        File.Delete(SyntheticBench.CaptionsFile(dir));
        var regenerated = SyntheticBench.EnsureGenerated(dir, tiny);
        Assert.Equal(tiny, regenerated.Options);
        Assert.True(File.Exists(SyntheticBench.CaptionsFile(dir)));
        // (Directory globs treat "x.*" as also matching "x", hence the explicit prefix test.)
        Assert.DoesNotContain(Directory.EnumerateDirectories(fx.Root).Select(Path.GetFileName), n => n!.StartsWith("regen.", StringComparison.Ordinal));
    }

    [Fact]
    public void Ensure_generated_leaves_foreign_folders_alone_and_cleans_dead_temporaries()
    {
        string dir = Path.Combine(fx.Root, "foreign");
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "notes.txt"), "user data");
        var e = Assert.Throws<MedPeftException>(() => SyntheticBench.EnsureGenerated(dir, SyntheticBenchFixture.Small));
        Assert.Contains("manifest.json", e.Message);
        Assert.True(File.Exists(Path.Combine(dir, "notes.txt")));

        // A temporary folder of a process that no longer runs is removed; the result is complete.
        string fresh = Path.Combine(fx.Root, "fresh");
        int deadPid = Enumerable.Range(4_000_000, 1000).First(pid => { try { Process.GetProcessById(pid).Dispose(); return false; } catch (ArgumentException) { return true; } });
        string stale = $"{fresh}.tmp-{deadPid}";
        Directory.CreateDirectory(Path.Combine(stale, "Slake1.0"));
        var tiny = SyntheticBenchFixture.Small with { TrainImages = 3, ValidationImages = 1, TestImages = 1, PretrainImages = 1, ReportTrain = 1, ReportVal = 1, ReportTest = 1 };
        SyntheticBench.EnsureGenerated(fresh, tiny);
        Assert.False(Directory.Exists(stale));
        Assert.NotNull(SyntheticBench.ReadManifest(fresh));
    }

    // ------------------------------------------------------------------ options

    [Fact]
    public void Options_are_validated_and_quick_is_about_four_times_smaller()
    {
        Assert.Throws<MedPeftException>(() => SyntheticBench.Plan(new SyntheticBenchOptions { ImageSize = 8 }));
        Assert.Throws<MedPeftException>(() => SyntheticBench.Plan(new SyntheticBenchOptions { TrainImages = -1 }));
        Assert.Throws<MedPeftException>(() => SyntheticBench.Plan(new SyntheticBenchOptions { QuestionsPerImage = 0 }));
        var d = SyntheticBenchOptions.Default;
        var q = SyntheticBenchOptions.Quick;
        Assert.InRange(d.TrainImages / (double)q.TrainImages, 3.5, 4.5);
        Assert.InRange(d.PretrainImages / (double)q.PretrainImages, 3.5, 4.5);
        Assert.InRange(d.ReportTrain / (double)q.ReportTrain, 3.5, 4.5);
        Assert.Equal(d.ImageSize, q.ImageSize);
    }
}
