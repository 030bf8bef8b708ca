using System.Text;
using System.Text.Json;
using MedPeft.Data;

namespace MedPeft.Tests.Data;

/// <summary>The streaming JSON path on files much larger than its 64 KiB buffer.</summary>
public class JsonStreamingTests
{
    private static string SlakeRecord(int qid, string question, string lang = "en", bool altOrder = false)
    {
        var q = JsonSerializer.Serialize(question, new JsonSerializerOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping });
        return altOrder
            ? $$"""{"qid": {{qid}}, "answer_type": "CLOSED", "answer": "Yes", "question": {{q}}, "q_lang": "{{lang}}", "img_name": "xmlab{{qid % 7}}/source.jpg", "triple": ["vhead", "_", "_"]}"""
            : $$"""{"img_id": {{qid % 7}}, "img_name": "xmlab{{qid % 7}}/source.jpg", "question": {{q}}, "answer": "{{qid}}", "q_lang": "{{lang}}", "answer_type": "OPEN", "triple": ["vhead", "_", "_"], "qid": {{qid}}}""";
    }

    [Fact]
    public void Large_slake_file_with_huge_records_and_multibyte_text_streams_correctly()
    {
        using var t = new ReaderTempDir();
        Directory.CreateDirectory(t.Combine("Slake1.0"));
        var sb = new StringBuilder("[");
        var expected = new List<(string Id, string Question)>();
        int n = 20_000;
        for (int i = 0; i < n; i++)
        {
            if (i > 0) sb.Append(i % 3 == 0 ? ",\n  " : ", ");
            string question = i switch
            {
                5 => new string('x', 200_000) + "?",                                 // one token bigger than the buffer
                17 => string.Concat(Enumerable.Repeat("肺部是否正常?", 20_000)),          // multi-byte text across buffer edges
                _ => $"Question {i} with \"quotes\", a tab\tand ünïcödé 肝脏?",
            };
            string lang = i % 10 == 9 ? "zh" : "en";
            sb.Append(SlakeRecord(i, question, lang, altOrder: i % 2 == 1));
            if (lang == "en") expected.Add((i.ToString(), question));
        }
        sb.Append(']');
        File.WriteAllText(t.Combine("Slake1.0", "train.json"), sb.ToString(), new UTF8Encoding(encoderShouldEmitUTF8Identifier: true)); // with BOM
        Assert.True(new FileInfo(t.Combine("Slake1.0", "train.json")).Length > 2_000_000);

        var skips = new SkipLog();
        var got = SlakeReader.Read(t.Path, "train", "en", skips).Select(s => (s.Id, s.Question)).ToList();
        Assert.Equal(expected, got);
        Assert.Equal(n / 10, skips["q_lang=zh"]);
    }

    [Fact]
    public void Reading_the_last_key_of_a_large_annotation_skips_earlier_arrays()
    {
        using var t = new ReaderTempDir();
        var sb = new StringBuilder("{\"train\": [");
        for (int i = 0; i < 30_000; i++)
        {
            if (i > 0) sb.Append(", ");
            sb.Append($$"""{"id": "t{{i}}", "study_id": {{50000000 + i}}, "subject_id": "{{10000000 + i}}", "report": "Report {{i}} ___ with\nnewline.", "image_path": ["p10/p{{10000000 + i}}/s{{50000000 + i}}/t{{i}}.jpg"], "split": "train"}""");
        }
        sb.Append("], \"val\": [{\"id\": \"v0\", \"report\": \"V\", \"image_path\": [\"v/0.jpg\"]}], \"test\": [");
        for (int i = 0; i < 3; i++)
            sb.Append(i > 0 ? ", " : "").Append($$"""{"id": "x{{i}}", "report": "T{{i}}", "image_path": ["x/{{i}}.jpg"]}""");
        sb.Append("]}");
        File.WriteAllText(t.Combine("annotation.json"), sb.ToString());

        var test = R2GenAnnotationReader.Read(t.Path, "test", R2GenDataset.MimicCxr).ToList();
        Assert.Equal(["x0", "x1", "x2"], test.Select(s => s.Id));
        Assert.Equal("v0", Assert.Single(R2GenAnnotationReader.Read(t.Path, "validation", R2GenDataset.MimicCxr)).Id);
        var train = R2GenAnnotationReader.Read(t.Path, "train", R2GenDataset.MimicCxr).ToList();
        Assert.Equal(30_000, train.Count);
        Assert.Equal("Report 29999 ___ with\nnewline.", train[^1].Report);
    }

    [Fact]
    public void Malformed_record_deep_in_a_large_file_is_located()
    {
        using var t = new ReaderTempDir();
        Directory.CreateDirectory(t.Combine("Slake1.0"));
        var sb = new StringBuilder("[");
        for (int i = 0; i < 5000; i++)
        {
            if (i > 0) sb.Append(", ");
            string rec = SlakeRecord(i, $"Question {i}?");
            if (i == 4321) rec = rec.Replace("\"answer\": ", "\"answer\" ");
            sb.Append(rec);
        }
        sb.Append(']');
        File.WriteAllText(t.Combine("Slake1.0", "test.json"), sb.ToString());
        int count = 0;
        string msg = ReaderFixtures.OneLineError(() => { foreach (var _ in SlakeReader.Read(t.Path, "test")) count++; });
        Assert.StartsWith("SLAKE test.json: malformed JSON in record 4321 (line 1, byte ", msg);
        Assert.Equal(4321, count);
    }
}
