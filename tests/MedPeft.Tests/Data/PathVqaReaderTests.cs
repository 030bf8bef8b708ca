using MedPeft.Data;

namespace MedPeft.Tests.Data;

public class PathVqaReaderTests
{
    private static string Root => ReaderFixtures.At("pathvqa");

    [Theory]
    [InlineData("train", 6)]
    [InlineData("validation", 3)]
    [InlineData("test", 3)]
    public void Split_sizes(string split, int expected)
    {
        var samples = PathVqaReader.Read(Root, split).ToList();
        Assert.Equal(expected, samples.Count);
        Assert.All(samples, s => Assert.Null(s.AnswerType));
        Assert.All(samples, s => Assert.True(File.Exists(s.ImagePath), s.ImagePath));
    }

    [Fact]
    public void Fields_paths_and_duplicates()
    {
        var train = PathVqaReader.Read(Root, Splits.Train).ToList();
        Assert.Equal(["train-0", "train-1", "train-2", "train-3", "train-4", "train-5"], train.Select(s => s.Id));
        Assert.Equal(Path.GetFullPath(Path.Combine(Root, "pvqa", "images", "train", "train_0001.jpg")), train[0].ImagePath);
        Assert.Equal("What is present?", train[0].Question);
        // Duplicated triplet kept.
        Assert.Equal(train[2] with { Id = "train-3" }, train[3]);
        Assert.Equal("in a palisading (basal) pattern", train[4].Answer);
        Assert.DoesNotContain(train, s => s.ImagePath.EndsWith("train_0004.jpg")); // unused image

        var val = PathVqaReader.Read(Root, "val").ToList();
        Assert.Equal("val-0", val[0].Id);
        Assert.EndsWith(Path.Combine("images", "val", "val_0001.jpg"), val[0].ImagePath);

        var test = PathVqaReader.Read(Path.Combine(Root, "pvqa"), "test").ToList(); // root may be pvqa/
        Assert.Equal("2", test[2].Answer);
    }

    [Fact]
    public void Pickle_only_gives_a_one_line_conversion_hint()
    {
        using var t = ReaderFixtures.Copy("pathvqa");
        string json = t.Combine("pvqa", "qas", "val", "val_qa.json");
        File.Delete(json);
        File.WriteAllBytes(Path.ChangeExtension(json, ".pkl"), [0x80, 0x04, 0x95]);
        string msg = ReaderFixtures.OneLineError(() => PathVqaReader.Read(t.Path, "validation"));
        Assert.StartsWith("PathVQA val_qa.json: only the Python pickle ", msg);
        Assert.Contains("convert it once with: python3 -c \"import json,pickle,sys; json.dump(pickle.load(", msg);
        Assert.Contains("val_qa.pkl", msg);

        File.Delete(Path.ChangeExtension(json, ".pkl"));
        Assert.StartsWith("PathVQA val_qa.json: file not found", ReaderFixtures.OneLineError(() => PathVqaReader.Read(t.Path, "val")));
    }

    [Fact]
    public void Missing_field_and_extension_handling()
    {
        using var t = ReaderFixtures.Copy("pathvqa");
        string json = t.Combine("pvqa", "qas", "test", "test_qa.json");
        File.WriteAllText(json, """[{"question": "q?", "answer": "yes", "image": "test_0001.jpg", "extra": [1, 2]}, {"image": "test_0002", "answer": "no"}]""");
        var e = new List<VqaSample>();
        string msg = ReaderFixtures.OneLineError(() => { foreach (var s in PathVqaReader.Read(t.Path, "test")) e.Add(s); });
        Assert.Equal("PathVQA test_qa.json: record 1: field \"question\" missing", msg);
        Assert.EndsWith("test_0001.jpg", Assert.Single(e).ImagePath);
    }
}
