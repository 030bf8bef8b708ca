using System.Text.Json;
using MedPeft.Evaluation;

namespace MedPeft.Tests.Evaluation;

/// <summary>Every fixtures/metrics/*.json file (reference values from the real pycocoevalcap) at 1e-9.</summary>
public class ReportMetricsTests
{
    private const double Tolerance = 1e-9;

    private static readonly string FixtureDir = Path.Combine(AppContext.BaseDirectory, "fixtures", "metrics");

    public static TheoryData<string> FixtureFiles()
    {
        var data = new TheoryData<string>();
        foreach (var file in Directory.GetFiles(FixtureDir, "*.json").Order(StringComparer.Ordinal))
            data.Add(Path.GetFileName(file));
        return data;
    }

    [Fact]
    public void AllKnownFixtureFilesAreCopied()
    {
        string[] expected =
        [
            "report_metrics_public.json", "edge_single_pair.json", "edge_all_identical.json",
            "edge_short_and_empty.json", "edge_uniform_references.json", "edge_multi_reference.json",
            "edge_whitespace_quirks.json",
        ];
        var present = Directory.GetFiles(FixtureDir, "*.json").Select(Path.GetFileName).ToHashSet();
        Assert.All(expected, name => Assert.Contains(name, present));
    }

    [Theory]
    [MemberData(nameof(FixtureFiles))]
    public void MatchesPycocoevalcap(string file)
    {
        string path = Path.Combine(FixtureDir, file);
        using var fixture = JsonDocument.Parse(File.ReadAllText(path));
        var root = fixture.RootElement;

        // The loader reads the fixture format directly.
        var pairs = ReportPairsFile.Load(path);
        var expectedIds = root.GetProperty("pairs").EnumerateArray().Select(p => p.GetProperty("id").GetString()!).ToList();
        Assert.Equal(expectedIds, pairs.Select(p => p.Id).ToList());

        var scores = ReportMetrics.Compute(pairs);

        // Corpus scores: exactly the six keys, no METEOR (no jar given).
        var corpus = scores.ToDictionary();
        var expectedCorpus = root.GetProperty("scores");
        Assert.Equal(expectedCorpus.EnumerateObject().Select(p => p.Name).Order(), corpus.Keys.Order());
        foreach (var metric in expectedCorpus.EnumerateObject())
            Near(metric.Value.GetDouble(), corpus[metric.Name], $"{file} scores.{metric.Name}");

        // Every per-example score.
        var perExample = scores.ToPerExampleDictionary();
        foreach (var metric in root.GetProperty("per_example").EnumerateObject())
        {
            var expected = metric.Value.EnumerateArray().Select(v => v.GetDouble()).ToArray();
            var actual = perExample[metric.Name];
            Assert.Equal(expected.Length, actual.Length);
            for (int i = 0; i < expected.Length; i++)
                Near(expected[i], actual[i], $"{file} per_example.{metric.Name}[{i}] ({pairs[i].Id})");
        }

        // BLEU counts, corpus and per pair.
        var cc = root.GetProperty("bleu_corpus_counts");
        AssertCounts(cc, "reflen", scores.BleuCorpusCounts, $"{file} bleu_corpus_counts");
        var perCounts = root.GetProperty("bleu_per_example_counts").EnumerateArray().ToList();
        Assert.Equal(pairs.Count, perCounts.Count);
        for (int i = 0; i < perCounts.Count; i++)
            AssertCounts(perCounts[i], "reflen_closest", scores.PerExample[i].BleuCounts, $"{file} bleu_per_example_counts[{i}]");

        Assert.Null(scores.Meteor);
        Assert.StartsWith("METEOR not computed: ", scores.MeteorNote);
        Assert.All(scores.PerExample, e => Assert.Null(e.Meteor));
    }

    [Fact]
    public void SubsetGivesDifferentCiderBecauseIdfComesFromTheSet()
    {
        var pairs = ReportPairsFile.Load(Path.Combine(FixtureDir, "report_metrics_public.json"));
        var full = CiderD.Compute(pairs);
        var firstTen = CiderD.Compute(pairs.Take(10).ToList());
        Assert.NotEqual(full.PerExample[0], firstTen.PerExample[0]);
        // BLEU and ROUGE-L per-example scores do not depend on the rest of the set.
        Assert.Equal(RougeL.Compute(pairs).PerExample[3], RougeL.Compute(pairs.Take(10).ToList()).PerExample[3]);
    }

    [Fact]
    public void ClosestReferenceLengthTieGoesToTheShorter()
    {
        Assert.Equal(8, Bleu.ClosestRefLength([12, 8], 10));
        Assert.Equal(8, Bleu.ClosestRefLength([8, 12], 10));
        Assert.Equal(11, Bleu.ClosestRefLength([8, 11, 13], 12));
    }

    [Fact]
    public void RougeSplitsOnSingleSpaces()
    {
        // split(" ") gives ["", "a", ""] for " a ": 3 candidate tokens, LCS 1 with "a".
        Assert.Equal(1, RougeL.LcsLength(" a ".Split(' '), ["a"]));
        double p = 1 / 3.0, r = 1.0, b2 = 1.44;
        Assert.Equal((1 + b2) * p * r / (r + b2 * p), RougeL.Score(" a ", ["a"]), 1e-15);
    }

    [Fact]
    public void EmptySetAndMissingReferencesAreRejected()
    {
        Assert.Throws<MedPeftException>(() => ReportMetrics.Compute([]));
        var ex = Assert.Throws<MedPeftException>(() => ReportMetrics.Compute([new ReportPair("x", "a b", [])]));
        Assert.Contains("'x'", ex.Message);
    }

    private static void Near(double expected, double actual, string what) =>
        Assert.True(Math.Abs(expected - actual) <= Tolerance, $"{what}: expected {expected:R}, got {actual:R}");

    private static void AssertCounts(JsonElement expected, string refLenField, BleuCounts actual, string what)
    {
        Assert.True(expected.GetProperty("testlen").GetInt32() == actual.TestLength, $"{what}.testlen");
        Assert.True(expected.GetProperty(refLenField).GetInt32() == actual.RefLength, $"{what}.{refLenField}");
        Assert.Equal(expected.GetProperty("guess").EnumerateArray().Select(v => v.GetInt32()), actual.Guess);
        Assert.Equal(expected.GetProperty("correct").EnumerateArray().Select(v => v.GetInt32()), actual.Correct);
    }
}
