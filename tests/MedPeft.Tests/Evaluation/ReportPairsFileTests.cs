using MedPeft.Evaluation;

namespace MedPeft.Tests.Evaluation;

public sealed class ReportPairsFileTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("report-pairs").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Write(string name, string text)
    {
        string path = Path.Combine(_dir, name);
        File.WriteAllText(path, text);
        return path;
    }

    private MedPeftException LoadFails(string name, string text)
    {
        string path = Write(name, text);
        var ex = Assert.Throws<MedPeftException>(() => ReportPairsFile.Load(path));
        Assert.StartsWith(path + ": ", ex.Message);
        Assert.DoesNotContain('\n', ex.Message);
        return ex;
    }

    [Fact]
    public void ReadsJsonl()
    {
        string path = Write("preds.jsonl", """
            {"id": "s1", "candidate": "the lungs are clear .", "references": ["lungs are clear ."], "kind": "x"}

            {"id": 7, "candidate": "", "references": ["a .", "b ."]}
            {"candidate": "no effusion .", "references": ["no effusion ."]}
            """);
        var pairs = ReportPairsFile.Load(path);
        Assert.Equal(["s1", "7", "2"], pairs.Select(p => p.Id));  // a missing id is the 0-based position
        Assert.Equal("the lungs are clear .", pairs[0].Candidate);
        Assert.Equal(["a .", "b ."], pairs[1].References);
        Assert.Equal("", pairs[1].Candidate);
    }

    [Fact]
    public void ReadsASingleLineJsonlFile()
    {
        string path = Write("one.jsonl", """{"id": "s1", "candidate": "a", "references": ["a"]}""");
        Assert.Equal("s1", Assert.Single(ReportPairsFile.Load(path)).Id);
    }

    [Fact]
    public void ReadsThePairsDocument()
    {
        string path = Write("pairs.json", """
            {
              "name": "x",
              "pairs": [ {"id": "p0", "candidate": "a b", "references": ["a b c"]} ],
              "scores": {"BLEU_1": 0.5}
            }
            """);
        var pair = Assert.Single(ReportPairsFile.Load(path));
        Assert.Equal(new ReportPair("p0", "a b", pair.References), pair);
        Assert.Equal(["a b c"], pair.References);
    }

    [Fact]
    public void MalformedJsonlLineIsNamed()
    {
        var ex = LoadFails("bad.jsonl", """
            {"id": "s1", "candidate": "a", "references": ["a"]}
            {"id": "s2", "candidate": "b", "references": ["b"]
            """);
        Assert.Contains(": line 2: invalid JSON", ex.Message);
    }

    [Fact]
    public void MissingFieldIsNamed()
    {
        var ex = LoadFails("missing.jsonl", """
            {"id": "s1", "candidate": "a", "references": ["a"]}
            {"id": "s2", "candidate": "b"}
            """);
        Assert.EndsWith(": line 2: missing field \"references\"", ex.Message);

        ex = LoadFails("missing.json", """{"pairs": [{"id": "a", "candidate": "x", "references": ["x"]}, {"id": "b", "references": ["y"]}]}""");
        Assert.EndsWith(": pairs[1]: missing field \"candidate\"", ex.Message);
    }

    [Fact]
    public void MalformedDocumentIsNamed()
    {
        var ex = LoadFails("bad.json", "{\n  \"pairs\": [\n    {\"id\": \"a\", \"candidate\": \"x\", \"references\": [\"x\"]},,\n  ]\n}\n");
        Assert.Contains(": invalid JSON at line 3", ex.Message);
    }

    [Theory]
    [InlineData("""{"candidate": 3, "references": ["a"]}""", "field \"candidate\" must be a string")]
    [InlineData("""{"candidate": "a", "references": []}""", "field \"references\" must be a non-empty array of strings")]
    [InlineData("""{"candidate": "a", "references": "a"}""", "field \"references\" must be a non-empty array of strings")]
    [InlineData("""{"candidate": "a", "references": ["a", null]}""", "references[1] must be a string")]
    [InlineData("""{"id": [1], "candidate": "a", "references": ["a"]}""", "field \"id\" must be a string or a number")]
    [InlineData("""[1, 2]""", "expected an object with a \"pairs\" array, or JSONL with one object per line")]
    [InlineData("""{"pairs": {}}""", "\"pairs\" must be an array")]
    [InlineData("""{"pairs": []}""", "no report pairs")]
    [InlineData("", "the file is empty (no report pairs)")]
    [InlineData("\n  \n", "the file is empty (no report pairs)")]
    [InlineData("{\"candidate\": \"a\",", "invalid JSON at line 1")]
    public void BadContentIsExplained(string content, string expected)
    {
        Assert.Contains(expected, LoadFails("f.jsonl", content).Message);
    }

    [Fact]
    public void DuplicateIdsAreRejected()
    {
        var ex = LoadFails("dup.jsonl", """
            {"id": "s1", "candidate": "a", "references": ["a"]}
            {"id": "s1", "candidate": "b", "references": ["b"]}
            """);
        Assert.EndsWith(": line 2: duplicate id \"s1\"", ex.Message);
    }

    [Fact]
    public void MissingFileIsNamed()
    {
        string path = Path.Combine(_dir, "nope.jsonl");
        var ex = Assert.Throws<MedPeftException>(() => ReportPairsFile.Load(path));
        Assert.Equal($"{path}: file not found", ex.Message);
    }
}
