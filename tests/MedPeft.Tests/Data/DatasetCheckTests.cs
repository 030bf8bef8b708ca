using System.Text.Json;
using MedPeft.Data;

namespace MedPeft.Tests.Data;

public class DatasetCheckTests
{
    private static void AssertSplit(SplitCheck s, int samples, int found, int missing, int undecodable, int? closed, int? open)
    {
        Assert.Equal(samples, s.Samples);
        Assert.Equal(found, s.ImagesFound);
        Assert.Equal(missing, s.ImagesMissing);
        Assert.Equal(undecodable, s.ImagesUndecodable);
        Assert.Equal(closed, s.Closed);
        Assert.Equal(open, s.Open);
        Assert.Null(s.Error);
    }

    [Fact]
    public void Slake_fixture_counts_and_json()
    {
        var r = DatasetCheck.Run("slake", ReaderFixtures.At("slake"));
        Assert.Equal(["train", "validation", "test"], r.Splits.Select(s => s.Split));
        AssertSplit(r["train"], samples: 6, found: 2, missing: 0, undecodable: 0, closed: 2, open: 4);
        AssertSplit(r["validation"], samples: 2, found: 1, missing: 0, undecodable: 0, closed: 1, open: 1);
        AssertSplit(r["test"], samples: 2, found: 1, missing: 0, undecodable: 0, closed: 0, open: 2);
        Assert.All(r.Splits, s => Assert.Equal(1, s.Skipped["q_lang=zh"]));
        Assert.False(r.HasProblems);

        using var doc = JsonDocument.Parse(r.ToJson());
        var root = doc.RootElement;
        Assert.Equal(["train", "validation", "test"], root.EnumerateObject().Select(p => p.Name));
        var train = root.GetProperty("train");
        Assert.Equal(["samples", "images_found", "images_missing", "images_undecodable", "closed", "open", "skipped"],
            train.EnumerateObject().Select(p => p.Name));
        Assert.Equal(6, train.GetProperty("samples").GetInt32());
        Assert.Equal(2, train.GetProperty("closed").GetInt32());
        Assert.Equal(1, train.GetProperty("skipped").GetProperty("q_lang=zh").GetInt32());
        Assert.DoesNotContain('\n', r.ToJson(indented: false));
    }

    [Fact]
    public void Missing_undecodable_and_truncated_images_are_counted_once_per_distinct_image()
    {
        using var t = ReaderFixtures.Copy("slake");
        string imgs = t.Combine("Slake1.0", "imgs");
        File.Delete(Path.Combine(imgs, "xmlab903", "source.jpg"));                           // validation's only image
        File.WriteAllText(Path.Combine(imgs, "xmlab901", "source.jpg"), "not a jpeg at all");  // test's only image
        string x902 = Path.Combine(imgs, "xmlab902", "source.jpg");                            // train, 3 questions
        byte[] bytes = File.ReadAllBytes(x902);
        File.WriteAllBytes(x902, bytes[..(bytes.Length / 2)]);                                 // truncated JPEG

        var r = DatasetCheck.Run("slake", t.Path);
        AssertSplit(r["train"], samples: 6, found: 2, missing: 0, undecodable: 1, closed: 2, open: 4);
        AssertSplit(r["validation"], samples: 2, found: 0, missing: 1, undecodable: 0, closed: 1, open: 1);
        AssertSplit(r["test"], samples: 2, found: 1, missing: 0, undecodable: 1, closed: 0, open: 2);
        Assert.True(r.HasProblems);
        Assert.Equal([Path.GetFullPath(x902)], r["train"].UndecodableExamples);
        Assert.Equal([Path.GetFullPath(Path.Combine(imgs, "xmlab903", "source.jpg"))], r["validation"].MissingExamples);

        using var doc = JsonDocument.Parse(r.ToJson());
        Assert.Equal(1, doc.RootElement.GetProperty("validation").GetProperty("images_missing").GetInt32());
        Assert.Equal(1, doc.RootElement.GetProperty("test").GetProperty("images_undecodable").GetInt32());
        Assert.Equal(1, doc.RootElement.GetProperty("train").GetProperty("undecodable_examples").GetArrayLength());

        string table = r.ToTable();
        Assert.Contains("validation: missing image: ", table);
        Assert.Contains("train: undecodable image: ", table);

        // Without decoding only existence is checked.
        var quick = DatasetCheck.Run("slake", t.Path, new DatasetCheckOptions { DecodeImages = false });
        Assert.Null(quick["test"].ImagesUndecodable);
        Assert.Equal(1, quick["test"].ImagesFound);
        using var qdoc = JsonDocument.Parse(quick.ToJson());
        Assert.False(qdoc.RootElement.GetProperty("test").TryGetProperty("images_undecodable", out _));
    }

    [Fact]
    public void Fixture_images_all_decode()
    {
        foreach (var f in Directory.EnumerateFiles(ReaderFixtures.Datasets, "*.*", SearchOption.AllDirectories)
                     .Where(p => p.EndsWith(".jpg") || p.EndsWith(".png")))
            Assert.Equal(ImageStatus.Ok, DatasetCheck.CheckImage(f));
        Assert.Equal(ImageStatus.Missing, DatasetCheck.CheckImage(Path.Combine(ReaderFixtures.Datasets, "none.jpg")));
    }

    [Fact]
    public void VqaRad_closed_open_come_from_answer_type()
    {
        var r = DatasetCheck.Run("vqa-rad", ReaderFixtures.At("vqa-rad"));
        AssertSplit(r["test"], samples: 4, found: 3, missing: 0, undecodable: 0, closed: 3, open: 1);
        Assert.Equal(9, r["train"].Samples + r["validation"].Samples);
        Assert.Equal(5, r["train"].Closed + r["validation"].Closed);
        Assert.Equal(4, r["train"].Open + r["validation"].Open);
        Assert.Equal(4, r["train"].ImagesFound + r["validation"].ImagesFound);
        Assert.Equal(1, r["validation"].ImagesFound);
    }

    [Fact]
    public void PathVqa_closed_is_yes_no()
    {
        var r = DatasetCheck.Run("pathvqa", ReaderFixtures.At("pathvqa"));
        AssertSplit(r["train"], samples: 6, found: 3, missing: 0, undecodable: 0, closed: 2, open: 4);
        AssertSplit(r["validation"], samples: 3, found: 2, missing: 0, undecodable: 0, closed: 1, open: 2);
        AssertSplit(r["test"], samples: 3, found: 2, missing: 0, undecodable: 0, closed: 1, open: 2);
        Assert.True(DatasetCheck.IsClosed(new VqaSample("1", "x", "q", " YES ", null)));
        Assert.False(DatasetCheck.IsClosed(new VqaSample("1", "x", "q", "yes", "OPEN")));
        Assert.True(DatasetCheck.IsClosed(new VqaSample("1", "x", "q", "Kidney", "CLOSED")));
    }

    [Fact]
    public void Report_formats_omit_closed_open()
    {
        var iu = DatasetCheck.Run("iu-xray", ReaderFixtures.At("iu-xray"));
        AssertSplit(iu["train"], samples: 4, found: 8, missing: 0, undecodable: 0, closed: null, open: null);
        AssertSplit(iu["validation"], samples: 2, found: 4, missing: 0, undecodable: 0, closed: null, open: null);
        AssertSplit(iu["test"], samples: 2, found: 4, missing: 0, undecodable: 0, closed: null, open: null);
        using var doc = JsonDocument.Parse(iu.ToJson());
        Assert.False(doc.RootElement.GetProperty("train").TryGetProperty("closed", out _));
        Assert.False(doc.RootElement.GetProperty("train").TryGetProperty("open", out _));
        Assert.DoesNotContain("closed", iu.ToTable());

        var mimic = DatasetCheck.Run("mimic-cxr", ReaderFixtures.At("mimic-cxr"));
        AssertSplit(mimic["train"], samples: 4, found: 4, missing: 0, undecodable: 0, closed: null, open: null);
        AssertSplit(mimic["validation"], samples: 1, found: 1, missing: 0, undecodable: 0, closed: null, open: null);
        AssertSplit(mimic["test"], samples: 2, found: 2, missing: 0, undecodable: 0, closed: null, open: null);
    }

    [Fact]
    public void A_split_error_is_reported_and_other_splits_still_checked()
    {
        using var t = ReaderFixtures.Copy("slake");
        File.Delete(t.Combine("Slake1.0", "validate.json"));
        File.WriteAllText(t.Combine("Slake1.0", "test.json"), """[{"qid": 1, "img_name": "xmlab901/source.jpg", "question": "Q?", "answer": "No", "q_lang": "en"}, {"qid": 2}]""");
        var r = DatasetCheck.Run("slake", t.Path);
        Assert.Null(r["train"].Error);
        Assert.Equal(6, r["train"].Samples);
        Assert.StartsWith("SLAKE validate.json: file not found", r["validation"].Error);
        Assert.Equal("SLAKE test.json: record 1: field \"q_lang\" missing", r["test"].Error);
        Assert.Equal(1, r["test"].Samples); // counted up to the error
        Assert.True(r.HasProblems);
        using var doc = JsonDocument.Parse(r.ToJson());
        Assert.StartsWith("SLAKE validate.json", doc.RootElement.GetProperty("validation").GetProperty("error").GetString());
        Assert.Contains("test: error: SLAKE test.json: record 1", r.ToTable());
    }

    [Fact]
    public void Unknown_format_or_wrong_root_throws()
    {
        ReaderFixtures.OneLineError(() => DatasetCheck.Run("nope", ReaderFixtures.At("slake")));
        Assert.StartsWith("SLAKE: no Slake1.0/ folder", ReaderFixtures.OneLineError(() => DatasetCheck.Run("slake", ReaderFixtures.At("iu-xray"))));
    }

    [Fact]
    public void Table_has_one_row_per_split()
    {
        var table = DatasetCheck.Run("slake", ReaderFixtures.At("slake")).ToTable();
        var lines = table.TrimEnd('\n').Split('\n');
        Assert.Equal(4, lines.Length);
        Assert.Matches(@"^split\s+samples\s+images\s+missing\s+undecodable\s+closed\s+open\s+skipped$", lines[0]);
        Assert.Matches(@"^train\s+6\s+2\s+0\s+0\s+2\s+4\s+q_lang=zh: 1$", lines[1]);
        Assert.Matches(@"^validation\s+2\s+1\s+0\s+0\s+1\s+1\s+q_lang=zh: 1$", lines[2]);
        Assert.Matches(@"^test\s+2\s+1\s+0\s+0\s+0\s+2\s+q_lang=zh: 1$", lines[3]);
    }
}
