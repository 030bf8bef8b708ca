using MedPeft.Data;

namespace MedPeft.Tests.Data;

public class VqaRadReaderTests
{
    private static string Root => ReaderFixtures.At("vqa-rad");
    private static readonly ReaderOptions DataRad = new() { VqaRadLayout = VqaRadLayout.DataRad };
    private static readonly ReaderOptions Official = new() { VqaRadLayout = VqaRadLayout.Official };

    private static List<VqaSample> Read(string split, ReaderOptions? o = null, string? root = null)
        => VqaRadReader.Read(root ?? Root, split, o).ToList();

    [Fact]
    public void Auto_prefers_data_RAD_when_both_layouts_exist()
    {
        Assert.Equal(VqaRadLayout.DataRad, VqaRadReader.DetectLayout(Root));
        Assert.Equal(Read("test", DataRad), Read("test"));
    }

    [Fact]
    public void DataRad_sizes_and_quirks()
    {
        var test = Read("test", DataRad);
        Assert.Equal(["5", "6", "10", "13"], test.Select(s => s.Id));

        var train = Read("train", DataRad);
        var val = Read("validation", DataRad);
        Assert.Equal(9, train.Count + val.Count);
        var all = train.Concat(val).ToDictionary(s => s.Id);
        Assert.Equal(["1", "2", "3", "4", "7", "8", "9", "11", "12"], all.Keys.OrderBy(int.Parse));

        Assert.Equal("2", all["3"].Answer);                 // JSON int answer → invariant string
        Assert.Equal("OPEN", all["3"].AnswerType);
        Assert.Equal("right kidney", all["7"].Answer);      // leading space trimmed, casing kept
        Assert.Equal("YES", all["8"].Answer);               // casing kept
        Assert.Equal("CLOSED", all["8"].AnswerType);        // "CLOSED " trimmed
        Assert.Equal("Are the liver \tspleen and kidneys all visualized?", all["9"].Question); // tab kept
        Assert.Equal(Path.GetFullPath(Path.Combine(Root, "data_RAD", "images", "synpic90013.jpg")), all["7"].ImagePath);
        Assert.All(all.Values.Concat(test), s => Assert.True(File.Exists(s.ImagePath), s.ImagePath));
    }

    [Fact]
    public void Root_may_be_the_data_RAD_folder()
    {
        Assert.Equal(Read("test", DataRad), Read("test", root: Path.Combine(Root, "data_RAD")));
    }

    [Fact]
    public void Official_layout_splits_by_test_in_phrase_type_and_keeps_duplicates()
    {
        var test = Read("test", Official);
        Assert.Equal(["5", "6", "10"], test.Select(s => s.Id));

        var trainSide = Read("train", Official).Concat(Read("validation", Official)).ToList();
        Assert.Equal(9, trainSide.Count);
        var byId = trainSide.ToDictionary(s => s.Id);
        // qid 9 is an exact duplicate of qid 1: both kept.
        Assert.Equal(byId["1"] with { Id = "9" }, byId["9"]);
        Assert.Equal("Right kidney", byId["7"].Answer);
        Assert.Equal("Posterior-Anterior", byId["12"].Answer);
        Assert.Equal("2", byId["3"].Answer);
        Assert.Equal("CLOSED", byId["8"].AnswerType);
        Assert.Equal("YES", byId["8"].Answer);
        Assert.Contains("\t", byId["11"].Question);
        // Folder name with spaces.
        Assert.Equal(Path.GetFullPath(Path.Combine(Root, "VQA_RAD Image Folder", "synpic90011.jpg")), byId["1"].ImagePath);
        Assert.All(trainSide.Concat(test), s => Assert.True(File.Exists(s.ImagePath), s.ImagePath));
    }

    [Theory]
    [InlineData(VqaRadLayout.DataRad)]
    [InlineData(VqaRadLayout.Official)]
    public void Validation_carve_out_is_deterministic_and_image_disjoint(VqaRadLayout layout)
    {
        var o = new ReaderOptions { VqaRadLayout = layout };
        var train = Read("train", o);
        var val = Read("validation", o);
        Assert.Equal(train, Read("train", o));
        Assert.Equal(val, Read("validation", o));

        var trainImages = train.Select(s => s.ImagePath).ToHashSet();
        var valImages = val.Select(s => s.ImagePath).ToHashSet();
        Assert.Single(valImages);                          // 4 distinct train images → round(0.4) → at least 1
        Assert.Empty(trainImages.Intersect(valImages));
        Assert.Equal(3, trainImages.Count);
        Assert.Empty(train.Select(s => s.Id).Intersect(val.Select(s => s.Id)));

        // The carve-out is the documented function of image names, fraction and seed.
        var expected = VqaRadReader.ValidationImages(trainImages.Concat(valImages).Select(Path.GetFileName)!, 0.1, 42);
        Assert.Equal(expected.OrderBy(x => x), valImages.Select(Path.GetFileName).OrderBy(x => x));
    }

    [Fact]
    public void Fraction_zero_gives_empty_validation()
    {
        var o = new ReaderOptions { VqaRadLayout = VqaRadLayout.DataRad, VqaRadValidationFraction = 0 };
        Assert.Empty(Read("validation", o));
        Assert.Equal(9, Read("train", o).Count);
    }

    [Fact]
    public void ValidationImages_selects_ten_percent_independent_of_order_and_dependent_on_seed()
    {
        var names = Enumerable.Range(0, 314).Select(i => $"synpic{10000 + i * 7}.jpg").ToList();
        var a = VqaRadReader.ValidationImages(names);
        Assert.Equal(31, a.Count);
        Assert.Subset(names.ToHashSet(), a.ToHashSet());

        var shuffled = names.OrderBy(n => n.GetHashCode() ^ 12345).Concat(names).ToList(); // any order, repeats
        Assert.True(a.SetEquals(VqaRadReader.ValidationImages(shuffled)));
        Assert.False(a.SetEquals(VqaRadReader.ValidationImages(names, 0.1, seed: 7)));

        // Pinned: the selection must not change between releases or platforms.
        Assert.Equal(PinnedFirst3, a.Order(StringComparer.Ordinal).Take(3));

        Assert.Empty(VqaRadReader.ValidationImages(["only.jpg"]));
        Assert.Single(VqaRadReader.ValidationImages(["a.jpg", "b.jpg"]));
    }

    // A change here means the carve-out changed (and with it every VQA-RAD train/validation result).
    private static readonly string[] PinnedFirst3 = ["synpic10182.jpg", "synpic10203.jpg", "synpic10420.jpg"];

    [Fact]
    public void Official_test_phrase_type_match_is_case_insensitive_and_bad_records_error()
    {
        using var t = ReaderFixtures.Copy("vqa-rad");
        string file = t.Combine("VQA_RAD Dataset Public.json");
        File.WriteAllText(file, """
            [{"qid": "1", "phrase_type": "Test_paraphrase", "image_name": "synpic90011.jpg", "question": "Q?", "answer": 12, "answer_type": "open"},
             {"qid": 2, "phrase_type": "freeform", "image_name": "synpic90011.jpg", "question": "Q?", "answer": "No", "answer_type": "CLOSED"}]
            """);
        var test = Assert.Single(Read("test", Official, t.Path));
        Assert.Equal("12", test.Answer);
        Assert.Equal("OPEN", test.AnswerType);

        File.WriteAllText(file, """[{"qid": 1, "image_name": "synpic90011.jpg", "question": "Q?", "answer": "No", "answer_type": "CLOSED"}]""");
        Assert.Equal("VQA-RAD VQA_RAD Dataset Public.json: record 0: field \"phrase_type\" missing",
            ReaderFixtures.OneLineError(() => Read("test", Official, t.Path)));

        File.WriteAllText(t.Combine("data_RAD", "testset.json"), """[{"qid": 1, "image_name": "synpic90011.jpg", "question": "Q?", "answer": null, "answer_type": "CLOSED"}]""");
        Assert.Equal("VQA-RAD testset.json: record 0: field \"answer\" is null",
            ReaderFixtures.OneLineError(() => Read("test", DataRad, t.Path)));
    }

    [Fact]
    public void Layout_errors()
    {
        using var t = new ReaderTempDir();
        Assert.StartsWith("VQA-RAD: found neither", ReaderFixtures.OneLineError(() => Read("train", root: t.Path)));
        Directory.CreateDirectory(t.Combine("data_RAD"));
        File.WriteAllText(t.Combine("data_RAD", "trainset.json"), "[]");
        Assert.Empty(Read("train", root: t.Path));
        Assert.StartsWith("VQA-RAD testset.json: file not found", ReaderFixtures.OneLineError(() => Read("test", root: t.Path)));
        Assert.StartsWith("VQA-RAD: no \"VQA_RAD Dataset Public.json\"", ReaderFixtures.OneLineError(() => Read("test", Official, t.Path)));
    }
}
