using MedPeft.Data;

namespace MedPeft.Tests.Data;

public class DatasetFormatsTests
{
    [Fact]
    public void Registry_names_and_tasks()
    {
        Assert.Equal(["slake", "vqa-rad", "pathvqa", "iu-xray", "mimic-cxr"], DatasetFormats.Names);
        Assert.Equal(DatasetTask.Vqa, DatasetFormats.TaskOf("slake"));
        Assert.Equal(DatasetTask.Vqa, DatasetFormats.TaskOf("VQA_RAD"));
        Assert.Equal(DatasetTask.Vqa, DatasetFormats.TaskOf("path-vqa"));
        Assert.Equal(DatasetTask.Report, DatasetFormats.TaskOf("iu-xray"));
        Assert.Equal(DatasetTask.Report, DatasetFormats.TaskOf("mimic-cxr"));
        Assert.Equal("unknown dataset format \"coco\" (expected one of: slake, vqa-rad, pathvqa, iu-xray, mimic-cxr)",
            ReaderFixtures.OneLineError(() => DatasetFormats.Get("coco")));
    }

    [Theory]
    [InlineData("train", "train")]
    [InlineData("Validation", "validation")]
    [InlineData("val", "validation")]
    [InlineData("validate", "validation")]
    [InlineData("dev", "validation")]
    [InlineData("TEST", "test")]
    public void Split_names(string given, string canonical) => Assert.Equal(canonical, DatasetFormats.CanonicalSplit(given));

    [Theory]
    [InlineData("slake", "slake", 6, 2, 2)]
    [InlineData("vqa-rad", "vqa-rad", -9, -9, 4)]
    [InlineData("pathvqa", "pathvqa", 6, 3, 3)]
    public void ReadVqa_dispatches(string format, string dir, int train, int val, int test)
    {
        string root = ReaderFixtures.At(dir);
        int tr = DatasetFormats.ReadVqa(format, root, "train").Count();
        int va = DatasetFormats.ReadVqa(format, root, "validation").Count();
        if (train < 0) Assert.Equal(-train, tr + va); // VQA-RAD: carve-out
        else
        {
            Assert.Equal(train, tr);
            Assert.Equal(val, va);
        }
        Assert.Equal(test, DatasetFormats.ReadVqa(format, root, "test").Count());
    }

    [Theory]
    [InlineData("iu-xray", 4, 2, 2)]
    [InlineData("mimic-cxr", 4, 1, 2)]
    public void ReadReports_dispatches(string format, int train, int val, int test)
    {
        string root = ReaderFixtures.At(format);
        Assert.Equal(train, DatasetFormats.ReadReports(format, root, Splits.Train).Count());
        Assert.Equal(val, DatasetFormats.ReadReports(format, root, Splits.Validation).Count());
        Assert.Equal(test, DatasetFormats.ReadReports(format, root, Splits.Test).Count());
    }

    [Fact]
    public void Options_and_skips_pass_through()
    {
        var skips = new SkipLog();
        var all = DatasetFormats.ReadVqa("slake", ReaderFixtures.At("slake"), "train", new ReaderOptions { QuestionLanguage = null }, skips).ToList();
        Assert.Equal(7, all.Count);
        skips = new SkipLog();
        Assert.Equal(6, DatasetFormats.ReadVqa("slake", ReaderFixtures.At("slake"), "train", null, skips).Count());
        Assert.Equal("q_lang=zh: 1", skips.ToString());
    }

    [Fact]
    public void Task_mismatch_and_bad_roots_are_errors()
    {
        Assert.Equal("dataset format \"iu-xray\" is a report-generation dataset, not VQA",
            ReaderFixtures.OneLineError(() => DatasetFormats.ReadVqa("iu-xray", ReaderFixtures.At("iu-xray"), "train")));
        Assert.Equal("dataset format \"slake\" is a VQA dataset, not report generation",
            ReaderFixtures.OneLineError(() => DatasetFormats.ReadReports("slake", ReaderFixtures.At("slake"), "train")));
        Assert.StartsWith("PathVQA: no pvqa/qas/",
            ReaderFixtures.OneLineError(() => DatasetFormats.ResolveRoot("pathvqa", ReaderFixtures.At("slake"))));
        Assert.EndsWith("Slake1.0", DatasetFormats.ResolveRoot("slake", ReaderFixtures.At("slake")));
    }
}
