using MedPeft.Data;

namespace MedPeft.Tests.Data;

public class R2GenAnnotationReaderTests
{
    private static string Iu => ReaderFixtures.At("iu-xray");
    private static string Mimic => ReaderFixtures.At("mimic-cxr");

    [Theory]
    [InlineData("train", 4)]
    [InlineData("validation", 2)]
    [InlineData("test", 2)]
    public void IuXray_sizes_and_both_views(string split, int expected)
    {
        var samples = R2GenAnnotationReader.Read(Iu, split, R2GenDataset.IuXray).ToList();
        Assert.Equal(expected, samples.Count);
        foreach (var s in samples)
        {
            Assert.Equal(2, s.ImagePaths.Count);
            Assert.EndsWith(Path.Combine(s.Id, "0.png"), s.ImagePaths[0]);
            Assert.EndsWith(Path.Combine(s.Id, "1.png"), s.ImagePaths[1]);
            Assert.All(s.ImagePaths, p => Assert.True(File.Exists(p), p));
        }
    }

    [Fact]
    public void IuXray_ids_and_raw_reports()
    {
        var train = R2GenAnnotationReader.Read(Path.Combine(Iu, "iu_xray"), "train", R2GenDataset.IuXray).ToList();
        Assert.Equal(["CXR9001_IM-9001", "CXR9002_IM-9002", "CXR9003_IM-9003-0001", "CXR9004_IM-9004"], train.Select(s => s.Id));
        Assert.StartsWith("XXXX XXXX and lateral views", train[1].Report);
        Assert.Contains("1. No acute cardiopulmonary disease.", train[1].Report);
        Assert.EndsWith("Heart size is normal..", train[2].Report);
        Assert.Contains("11 mm", train[2].Report);
        Assert.Equal(Path.GetFullPath(Path.Combine(Iu, "iu_xray", "images", "CXR9001_IM-9001", "0.png")), train[0].ImagePaths[0]);
        Assert.Equal("CXR9006_IM-9006-1001", R2GenAnnotationReader.Read(Iu, "val", R2GenDataset.IuXray).Last().Id);
    }

    [Theory]
    [InlineData("train", 4)]
    [InlineData("validation", 1)]
    [InlineData("test", 2)]
    public void MimicCxr_sizes_one_image_per_entry(string split, int expected)
    {
        var samples = R2GenAnnotationReader.Read(Mimic, split, R2GenDataset.MimicCxr).ToList();
        Assert.Equal(expected, samples.Count);
        Assert.All(samples, s => Assert.True(File.Exists(Assert.Single(s.ImagePaths))));
    }

    [Fact]
    public void MimicCxr_fields_and_raw_reports()
    {
        var train = R2GenAnnotationReader.Read(Mimic, "train", R2GenDataset.MimicCxr).ToList();
        Assert.Equal("52e6b438-f2a74de4-269e0d37-6513270e-a6a3a450", train[0].Id);
        Assert.Equal(Path.GetFullPath(Path.Combine(Mimic, "mimic_cxr", "images", "p19", "p19990001", "s59990011", "52e6b438-f2a74de4-269e0d37-6513270e-a6a3a450.jpg")),
            train[0].ImagePaths[0]);
        Assert.Equal(train[0].Report, train[1].Report); // two views of one study: two entries, same report
        Assert.Equal("Compared to ___, there is new mild pulmonary vascular congestion. Small bilateral pleural effusions.\nHeart size is mildly enlarged.", train[2].Report);
        Assert.Contains("4.5 cm", train[3].Report);
    }

    [Fact]
    public void MimicCxr_tolerates_string_ids_and_extra_paths()
    {
        using var t = new ReaderTempDir();
        File.WriteAllText(t.Combine("annotation.json"), """
            {"test": [{"study_id": "50000001", "subject_id": "10000001", "id": "abc", "report": "R1", "image_path": ["p10/p10000001/s50000001/abc.jpg", "p10/p10000001/s50000001/def.jpg"], "split": "test", "extra": {"a": [1]}},
                      {"id": 17, "study_id": 50000002, "report": "R2", "image_path": "p10/p10000001/s50000002/x.jpg"}],
             "train": [], "val": []}
            """);
        var test = R2GenAnnotationReader.Read(t.Path, "test", R2GenDataset.MimicCxr).ToList();
        Assert.Equal(2, test.Count);
        Assert.Equal(Path.Combine(t.Path, "images", "p10", "p10000001", "s50000001", "abc.jpg"), Assert.Single(test[0].ImagePaths));
        Assert.Equal("17", test[1].Id);
        Assert.Empty(R2GenAnnotationReader.Read(t.Path, "train", R2GenDataset.MimicCxr));
        // IU-Xray keeps every path.
        Assert.Equal(2, R2GenAnnotationReader.Read(t.Path, "test", R2GenDataset.IuXray).First().ImagePaths.Count);
    }

    [Fact]
    public void Errors_name_the_file_key_record_and_field()
    {
        using var t = new ReaderTempDir();
        string file = t.Combine("annotation.json");
        File.WriteAllText(file, """{"train": [{"id": "a", "report": "r", "image_path": ["a/0.png"]}], "val": [], "    ": []}""");
        Assert.Equal("IU-Xray annotation.json: key \"test\" missing (top-level keys: \"train\", \"val\", \"    \")",
            ReaderFixtures.OneLineError(() => R2GenAnnotationReader.Read(t.Path, "test", R2GenDataset.IuXray).ToList()));

        File.WriteAllText(file, """{"train": [{"id": "a", "report": "r", "image_path": ["a/0.png"]}, {"id": "b", "image_path": ["b/0.png"]}]}""");
        Assert.Equal("IU-Xray annotation.json: \"train\" record 1: field \"report\" missing",
            ReaderFixtures.OneLineError(() => R2GenAnnotationReader.Read(t.Path, "train", R2GenDataset.IuXray).ToList()));

        File.WriteAllText(file, """{"train": [{"id": "a", "report": "r", "image_path": []}]}""");
        Assert.Equal("MIMIC-CXR annotation.json: \"train\" record 0: field \"image_path\" is empty",
            ReaderFixtures.OneLineError(() => R2GenAnnotationReader.Read(t.Path, "train", R2GenDataset.MimicCxr).ToList()));

        File.WriteAllText(file, """{"train": {"id": "a"}}""");
        Assert.StartsWith("MIMIC-CXR annotation.json: key \"train\" must hold an array",
            ReaderFixtures.OneLineError(() => R2GenAnnotationReader.Read(t.Path, "train", R2GenDataset.MimicCxr).ToList()));

        File.WriteAllText(file, """[{"id": "a"}]""");
        Assert.StartsWith("MIMIC-CXR annotation.json: expected a JSON object at the top level",
            ReaderFixtures.OneLineError(() => R2GenAnnotationReader.Read(t.Path, "train", R2GenDataset.MimicCxr).ToList()));

        File.WriteAllText(file, """{"train": [{"id": "a", "report": "r", "image_path": ["a/0.png"]}, {"id": "b" "report": "r"}]}""");
        Assert.StartsWith("IU-Xray annotation.json: malformed JSON in \"train\" record 1 (line 1, byte ",
            ReaderFixtures.OneLineError(() => R2GenAnnotationReader.Read(t.Path, "train", R2GenDataset.IuXray).ToList()));

        File.Delete(file);
        Assert.StartsWith("IU-Xray: no annotation.json in ",
            ReaderFixtures.OneLineError(() => R2GenAnnotationReader.Read(t.Path, "train", R2GenDataset.IuXray)));
    }
}
