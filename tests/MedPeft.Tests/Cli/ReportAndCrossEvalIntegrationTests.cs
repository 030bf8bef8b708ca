using System.Text.Json.Nodes;
using MedPeft.Data;
using MedPeft.Data.Synthetic;
using MedPeft.Models.Blip;

namespace MedPeft.Tests.Cli;

/// <summary>`medpeft train/eval --task report` and cross-dataset `medpeft eval --test …` through the real CLI.</summary>
public class ReportAndCrossEvalIntegrationTests
{
    static (string Model, string Data) Setup(string root, SyntheticBenchOptions options) => TinyBlipFolder.Create(root, options, seed: 4);

    [Fact]
    public void Train_and_eval_task_report_from_a_vqa_folder_then_score_report_reproduces_the_scores()
    {
        var root = Directory.CreateTempSubdirectory("medpeft-cli-report-").FullName;
        var options = SyntheticBenchOptions.Quick with { TrainImages = 4, ValidationImages = 2, TestImages = 2, PretrainImages = 1, ReportTrain = 24, ReportVal = 4, ReportTest = 6 };
        var (model, data) = Setup(root, options);
        var iu = SyntheticBench.IuXrayRoot(data);
        var outDir = Path.Combine(root, "run");
        var r = CliRunner.Run("train", "--task", "report", "--model", model, "--data", iu, "--format", "iu-xray", "--strategy", "ln",
            "--max-steps", "3", "--batch-size", "8", "--prompt", "findings :", "--augment", "--out", outDir, "--threads", "2");
        Assert.True(r.ExitCode == 0, r.StdErr + r.StdOut);
        Assert.Contains("text_encoder tensors", r.StdOut);
        var summary = JsonNode.Parse(File.ReadAllText(Path.Combine(outDir, "train_summary.json")))!;
        Assert.Equal("report", summary["task"]!.GetValue<string>());
        Assert.Equal(3, summary["steps"]!.GetValue<int>());
        Assert.Equal(2, summary["options"]!["views"]!.GetValue<int>());
        Assert.Equal("findings :", summary["options"]!["prompt"]!.GetValue<string>());
        Assert.Equal(0.5, summary["options"]!["augmentation"]!["random_resized_crop_scale"]![0]!.GetValue<double>());
        Assert.Equal("LN_TUNING", summary["adapter"]!.GetValue<string>());
        Assert.Equal("BlipForConditionalGeneration", BlipModelFolder.LoadConfig(Path.Combine(outDir, "model")).Architectures![0]);

        var preds = Path.Combine(root, "reports.json");
        var e = CliRunner.Run("eval", "--task", "report", "--model", Path.Combine(outDir, "model"), "--data", iu, "--format", "iu-xray",
            "--prompt", "findings :", "--max-new-tokens", "12", "--num-beams", "2", "--predictions", preds, "--json", "--threads", "2");
        Assert.True(e.ExitCode == 0, e.StdErr + e.StdOut);
        var scores = JsonNode.Parse(e.StdOut)!;
        Assert.Equal(6, scores["reports"]!.GetValue<int>());
        var rescored = CliRunner.Run("score", "report", preds, "--json");
        Assert.True(rescored.ExitCode == 0, rescored.StdErr);
        var again = JsonNode.Parse(rescored.StdOut)!;
        foreach (var k in new[] { "BLEU_1", "BLEU_4", "ROUGE_L", "CIDEr" })
            Assert.Equal(scores[k]!.GetValue<double>(), again[k]!.GetValue<double>(), 12);
        var pairs = JsonNode.Parse(File.ReadAllText(preds))!["pairs"]!.AsArray();
        Assert.Equal(6, pairs.Count);
        Assert.All(pairs, p => Assert.DoesNotContain("findings", p!["candidate"]!.GetValue<string>()));   // the prompt is stripped
    }

    /// <summary>The benchmark's SLAKE-format test split rewritten in VQA-RAD's data_RAD layout (a second format).</summary>
    static string WriteVqaRad(string root, string slakeRoot)
    {
        var dir = Path.Combine(root, "rad", "data_RAD");
        Directory.CreateDirectory(Path.Combine(dir, "images"));
        var records = new JsonArray();
        int qid = 1;
        foreach (var s in SlakeReader.Read(slakeRoot, Splits.Test).Take(12))
        {
            var name = $"img{qid}{Path.GetExtension(s.ImagePath)}";
            File.Copy(s.ImagePath, Path.Combine(dir, "images", name));
            records.Add(new JsonObject
            {
                ["qid"] = qid++, ["image_name"] = name, ["image_organ"] = "CHEST", ["answer"] = s.Answer, ["answer_type"] = s.AnswerType ?? "OPEN",
                ["question_type"] = "PRES", ["question"] = s.Question, ["phrase_type"] = "freeform",
            });
        }
        File.WriteAllText(Path.Combine(dir, "testset.json"), records.ToJsonString());
        File.WriteAllText(Path.Combine(dir, "trainset.json"), "[]");
        return Path.Combine(root, "rad");
    }

    [Fact]
    public void Eval_scores_several_test_sets_in_different_formats_separately()
    {
        var root = Directory.CreateTempSubdirectory("medpeft-cli-cross-").FullName;
        var options = SyntheticBenchOptions.Quick with { TrainImages = 4, ValidationImages = 2, TestImages = 5, PretrainImages = 1, ReportTrain = 1, ReportVal = 1, ReportTest = 1 };
        var (model, data) = Setup(root, options);
        var rad = WriteVqaRad(root, data);
        var preds = Path.Combine(root, "preds.jsonl");
        var e = CliRunner.Run("eval", "--model", model, "--test", $"{data}:slake", "--test", $"{rad}:vqa-rad:test",
            "--num-beams", "1", "--predictions", preds, "--json", "--threads", "2");
        Assert.True(e.ExitCode == 0, e.StdErr + e.StdOut);
        var o = JsonNode.Parse(e.StdOut)!.AsObject();
        Assert.Equal(["slake:test", "vqa-rad:test"], o.Select(kv => kv.Key));
        Assert.Equal(20, o["slake:test"]!["closed"]!.GetValue<int>() + o["slake:test"]!["open"]!.GetValue<int>());
        Assert.Equal(12, o["vqa-rad:test"]!["closed"]!.GetValue<int>() + o["vqa-rad:test"]!["open"]!.GetValue<int>());
        Assert.Equal("vqa-rad", o["vqa-rad:test"]!["format"]!.GetValue<string>());
        foreach (var (name, n) in new[] { ("slake-test", 20), ("vqa-rad-test", 12) })
        {
            var file = Path.Combine(root, $"preds.{name}.jsonl");
            Assert.Equal(n, File.ReadAllLines(file).Length);
            var rescored = JsonNode.Parse(CliRunner.Run("score", "vqa", file, "--json").StdOut)!;
            Assert.Equal(o[name.Replace("-test", ":test")]!["overall_acc"]!.GetValue<double>(), rescored["overall_acc"]!.GetValue<double>(), 9);
        }

        // The table form names each set; a bad spec is a one-line error.
        var table = CliRunner.Run("eval", "--model", model, "--data", data, "--test", $"{rad}:vqa-rad", "--num-beams", "1", "--threads", "2");
        Assert.True(table.ExitCode == 0, table.StdErr);
        Assert.Contains("slake:test", table.StdOut);
        Assert.Contains("vqa-rad:test", table.StdOut);
        var bad = CliRunner.Run("eval", "--model", model, "--test", $"{rad}:nosuch");
        Assert.NotEqual(0, bad.ExitCode);
        Assert.Contains("DIR:FORMAT[:SPLIT]", bad.StdErr + bad.StdOut);
    }
}

public class BenchDataCliTests
{
    [Fact]
    public void Bench_data_prints_decode_rate_and_stall_with_and_without_prefetch()
    {
        var r = CliRunner.Run("bench", "data", "--steps", "2", "--batch", "2", "--source-size", "48", "--size", "32", "--step-ms", "5", "--threads", "1");
        Assert.True(r.ExitCode == 0, r.StdErr + r.StdOut);
        Assert.Contains("images/s", r.StdOut);
        Assert.Contains("inline", r.StdOut);
        Assert.Contains("prefetch 2", r.StdOut);
        Assert.Matches(@"data stall \d+ ms/step", r.StdOut);
    }
}
