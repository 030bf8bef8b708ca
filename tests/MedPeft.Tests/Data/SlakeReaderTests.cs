using MedPeft.Data;

namespace MedPeft.Tests.Data;

public class SlakeReaderTests
{
    private static string Root => ReaderFixtures.At("slake");

    [Theory]
    [InlineData("train", 6)]
    [InlineData("validation", 2)]
    [InlineData("test", 2)]
    public void English_split_sizes_and_zh_skips(string split, int expected)
    {
        var skips = new SkipLog();
        var samples = SlakeReader.Read(Root, split, "en", skips).ToList();
        Assert.Equal(expected, samples.Count);
        Assert.Equal(1, skips["q_lang=zh"]);
        Assert.Equal(1, skips.Total);
        Assert.All(samples, s => Assert.True(File.Exists(s.ImagePath), s.ImagePath));
    }

    [Theory]
    [InlineData("train", 7)]
    [InlineData("validation", 3)]
    [InlineData("test", 3)]
    public void Null_language_keeps_all(string split, int expected)
    {
        var skips = new SkipLog();
        Assert.Equal(expected, SlakeReader.Read(Root, split, qLang: null, skips).Count());
        Assert.Equal(0, skips.Total);
    }

    [Fact]
    public void Chinese_only_run_keeps_utf8_and_counts_english_skips()
    {
        var skips = new SkipLog();
        var zh = SlakeReader.Read(Root, "train", "zh", skips).ToList();
        var s = Assert.Single(zh);
        Assert.Equal("这张图片的成像方式是什么?", s.Question);
        Assert.Equal("6", s.Id);
        Assert.Equal(6, skips["q_lang=en"]);
    }

    [Fact]
    public void Fields_paths_answer_types_and_duplicates()
    {
        var train = SlakeReader.Read(Root, Splits.Train).ToList();
        Assert.Equal(["0", "1", "2", "3", "4", "5"], train.Select(s => s.Id));

        var first = train[0];
        Assert.Equal("What modality is used to take this image?", first.Question);
        Assert.Equal("CT", first.Answer);
        Assert.Equal("OPEN", first.AnswerType);
        Assert.Equal(Path.GetFullPath(ReaderFixtures.At("slake", "Slake1.0", "imgs", "xmlab900", "source.jpg")), first.ImagePath);

        // Closed non-yes/no answer; record with content_type as last key (other key order).
        var kidney = train.Single(s => s.Id == "2");
        Assert.Equal("Kidney", kidney.Answer);
        Assert.Equal("CLOSED", kidney.AnswerType);

        // Duplicated question (qids 4 and 5) kept; numeric string answer.
        var dup = train.Where(s => s.Question == "How many lungs are shown in this image?").ToList();
        Assert.Equal(2, dup.Count);
        Assert.All(dup, d => Assert.Equal("2", d.Answer));

        // kvqa record
        Assert.Equal("Breathe", train.Single(s => s.Id == "3").Answer);
        Assert.EndsWith(Path.Combine("xmlab902", "source.jpg"), train.Single(s => s.Id == "3").ImagePath);
    }

    [Fact]
    public void Root_may_be_the_Slake10_folder_itself_and_split_aliases_work()
    {
        var a = SlakeReader.Read(Root, "validation").ToList();
        var b = SlakeReader.Read(Path.Combine(Root, "Slake1.0"), "validate").ToList();
        var c = SlakeReader.Read(Root, "val").ToList();
        Assert.Equal(a, b);
        Assert.Equal(a, c);
        Assert.Equal(["7", "8"], a.Select(s => s.Id));
        Assert.Equal("Right Lung, Lower Left", a[0].Answer);
    }

    [Fact]
    public void ReadFile_reads_a_file_with_imgs_beside_it()
    {
        var path = ReaderFixtures.At("slake", "Slake1.0", "test.json");
        var samples = SlakeReader.ReadFile(path).ToList();
        Assert.Equal(["10", "11"], samples.Select(s => s.Id));
        Assert.Equal("T2", samples[0].Answer);
        Assert.Equal(Path.GetFullPath(ReaderFixtures.At("slake", "Slake1.0", "imgs", "xmlab901", "source.jpg")), samples[0].ImagePath);
    }

    [Fact]
    public void Reading_never_opens_images()
    {
        using var t = ReaderFixtures.Copy("slake");
        Directory.Delete(t.Combine("Slake1.0", "imgs"), recursive: true);
        var samples = SlakeReader.Read(t.Path, "train").ToList();
        Assert.Equal(6, samples.Count);
        Assert.All(samples, s => Assert.False(File.Exists(s.ImagePath)));
    }

    [Fact]
    public void Missing_field_is_a_one_line_error_naming_file_record_and_field()
    {
        using var t = ReaderFixtures.Copy("slake");
        string file = t.Combine("Slake1.0", "train.json");
        File.WriteAllText(file, """
            [{"qid": 0, "img_name": "xmlab900/source.jpg", "question": "Q?", "answer": "A", "q_lang": "en", "answer_type": "OPEN"},
             {"qid": 1, "img_name": "xmlab900/source.jpg", "question": "Q2?", "q_lang": "en", "answer_type": "OPEN"}]
            """);
        string msg = ReaderFixtures.OneLineError(() => SlakeReader.Read(t.Path, "train").ToList());
        Assert.Equal("SLAKE train.json: record 1: field \"answer\" missing", msg);
    }

    [Fact]
    public void Wrong_type_and_non_object_records_are_one_line_errors()
    {
        using var t = ReaderFixtures.Copy("slake");
        string file = t.Combine("Slake1.0", "test.json");
        File.WriteAllText(file, """[{"qid": 0, "img_name": 5, "question": "Q?", "answer": "A", "q_lang": "en"}]""");
        Assert.Equal("SLAKE test.json: record 0: field \"img_name\" must be a string, found a number",
            ReaderFixtures.OneLineError(() => SlakeReader.Read(t.Path, "test").ToList()));

        File.WriteAllText(file, """[{"qid": 0, "img_name": "x.jpg", "question": "Q?", "answer": "A", "q_lang": "en"}, 7]""");
        Assert.Equal("SLAKE test.json: record 1: expected a JSON object, found a number",
            ReaderFixtures.OneLineError(() => SlakeReader.Read(t.Path, "test").ToList()));

        File.WriteAllText(file, """{"qid": 0}""");
        Assert.StartsWith("SLAKE test.json: expected a JSON array",
            ReaderFixtures.OneLineError(() => SlakeReader.Read(t.Path, "test").ToList()));
    }

    [Fact]
    public void Malformed_json_is_a_one_line_error_naming_file_and_record()
    {
        using var t = ReaderFixtures.Copy("slake");
        string file = t.Combine("Slake1.0", "train.json");
        string good = File.ReadAllText(file);
        // Break the third record: drop the colon after its first key.
        int third = IndexOfNth(good, "{\"img_id\"", 3);
        File.WriteAllText(file, good[..third] + "{\"img_id\" " + good[(third + "{\"img_id\": ".Length)..]);
        var yielded = new List<VqaSample>();
        string msg = ReaderFixtures.OneLineError(() => { foreach (var s in SlakeReader.Read(t.Path, "train")) yielded.Add(s); });
        Assert.StartsWith("SLAKE train.json: malformed JSON in record 2 (line 1, byte ", msg);
        Assert.Equal(2, yielded.Count); // streamed: records before the bad one were delivered

        File.WriteAllText(file, good[..^1]); // truncated: no closing bracket
        Assert.StartsWith("SLAKE train.json: ", ReaderFixtures.OneLineError(() => SlakeReader.Read(t.Path, "train").ToList()));

        File.WriteAllText(file, good + " x");
        Assert.StartsWith("SLAKE train.json: malformed JSON after record 6",
            ReaderFixtures.OneLineError(() => SlakeReader.Read(t.Path, "train").ToList()));

        File.WriteAllText(file, "");
        Assert.StartsWith("SLAKE train.json: ", ReaderFixtures.OneLineError(() => SlakeReader.Read(t.Path, "train").ToList()));
    }

    [Fact]
    public void Missing_split_file_and_missing_root_are_errors()
    {
        using var t = ReaderFixtures.Copy("slake");
        File.Delete(t.Combine("Slake1.0", "validate.json"));
        string msg = ReaderFixtures.OneLineError(() => SlakeReader.Read(t.Path, "validation"));
        Assert.StartsWith("SLAKE validate.json: file not found", msg);

        Assert.StartsWith("SLAKE: dataset folder not found",
            ReaderFixtures.OneLineError(() => SlakeReader.Read(t.Combine("nope"), "train")));
        Assert.StartsWith("SLAKE: no Slake1.0/ folder",
            ReaderFixtures.OneLineError(() => SlakeReader.Read(ReaderFixtures.At("pathvqa"), "train")));
        Assert.StartsWith("unknown split",
            ReaderFixtures.OneLineError(() => SlakeReader.Read(Root, "training")));
    }

    [Fact]
    public void Missing_q_lang_is_an_error_only_when_filtering()
    {
        using var t = ReaderFixtures.Copy("slake");
        string file = t.Combine("Slake1.0", "test.json");
        File.WriteAllText(file, """[{"qid": "a1", "img_name": "xmlab901/source.jpg", "question": "Q?", "answer": " yes "}]""");
        Assert.Equal("SLAKE test.json: record 0: field \"q_lang\" missing",
            ReaderFixtures.OneLineError(() => SlakeReader.Read(t.Path, "test").ToList()));
        var s = Assert.Single(SlakeReader.Read(t.Path, "test", qLang: null));
        Assert.Equal("a1", s.Id);
        Assert.Equal("yes", s.Answer);
        Assert.Null(s.AnswerType);
    }

    internal static int IndexOfNth(string s, string what, int n)
    {
        int i = -1;
        for (int k = 0; k < n; k++) i = s.IndexOf(what, i + 1, StringComparison.Ordinal);
        return i;
    }
}
