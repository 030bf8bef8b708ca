using System.Text.Json.Nodes;
using MedPeft.Experiments;

namespace MedPeft.Tests.Experiments;

public class ResultsOutputTests
{
    static StoredRun Stored(int index, string method, string strategy, long seed, long trainable, double overall, double closed)
    {
        var result = new JsonObject
        {
            ["method"] = method, ["strategy"] = strategy, ["model"] = "m", ["dataset"] = "d", ["task"] = "vqa", ["seed"] = seed,
            ["learning_rate"] = 0.01, ["trainable"] = trainable, ["total"] = 1000L, ["steps"] = 10, ["train_seconds"] = 2.0,
            ["steps_per_second"] = 5.0, ["peak_memory_bytes"] = 100L * 1024 * 1024, ["wall_seconds"] = 3.0, ["code_version"] = "git:abc",
            ["metrics"] = new JsonObject { ["test"] = new JsonObject { ["overall_acc"] = overall, ["closed_acc"] = closed, ["open_acc"] = 50.0, ["open_token_recall"] = 60.0 } },
            ["loss_curve"] = new JsonArray(new JsonArray(5, 2.0), new JsonArray(10, 1.0)),
        };
        return new StoredRun($"k{index}-{seed}", index, method, new JsonObject(), result, "w", 0);
    }

    static List<StoredRun> Sample() =>
    [
        Stored(0, "zero-shot", "none", 42, 0, 40, 50),
        Stored(1, "full", "full", 1, 1000, 70, 80), Stored(1, "full", "full", 2, 1000, 72, 80),
        Stored(2, "ln", "ln", 1, 4, 60, 70), Stored(2, "ln", "ln", 2, 4, 64, 70),
        Stored(3, "ffn", "ffn", 1, 400, 55, 60), Stored(3, "ffn", "ffn", 2, 400, 57, 60),
    ];

    [Fact]
    public void Rows_are_aggregated_over_seeds_with_mean_and_sample_std()
    {
        var rows = ResultsTables.Aggregate(Sample());
        Assert.Equal(["zero-shot", "full", "ln", "ffn"], rows.Select(r => r.Method));
        var full = rows[1];
        Assert.Equal(2, full.Seeds);
        Assert.Equal(71, full.Metrics["test.overall_acc"].Mean, 9);
        Assert.Equal(Math.Sqrt(2), full.Metrics["test.overall_acc"].Std, 9);
        Assert.Equal(0.4, rows[2].SharePercent, 9);

        var md = ResultsTables.Markdown("vqa", rows, Sample());
        Console.WriteLine(md);
        Assert.Contains("| full | 1,000 | 100.00 | 0.01 | 100 | 2.0 | 5.00 | 80.0 ± 0.0 | 50.0 ± 0.0 | 71.0 ± 1.4 | 60.0 ± 0.0 |", md);
        var csv = ResultsTables.Csv("vqa", rows, Sample()).Split('\n');
        Assert.StartsWith("task,dataset,method,model,strategy,seeds,trainable,total,trainable_percent,learning_rate,test_closed_acc_mean,test_closed_acc_std", csv[0]);
        Assert.EndsWith(string.Join(",", ResultsTables.TimingColumns), csv[0].TrimEnd('\r'));
        Assert.Equal(5, csv.Count(l => l.Length > 0));
    }

    static StoredRun Report(int index, string method, string strategy, long seed, double bleu4, bool meteor = false)
    {
        var test = new JsonObject
        {
            ["CIDEr"] = 0.5 + bleu4, ["ROUGE_L"] = 0.3, ["BLEU_4"] = bleu4, ["BLEU_3"] = 0.15, ["BLEU_2"] = 0.2, ["BLEU_1"] = 0.25,   // stored order ≠ column order
            ["reports"] = 25,
        };
        if (meteor) test["METEOR"] = 0.125; else test["METEOR_note"] = "METEOR not computed: no path to meteor-1.5.jar was given";
        var r = Stored(index, method, strategy, seed, strategy == "none" ? 0 : 4, 0, 0);
        r.Result["task"] = "report";
        r.Result["dataset"] = "d-report";
        r.Result["metrics"] = new JsonObject { ["test"] = test };
        return r;
    }

    [Fact]
    public void Report_tables_show_bleu_rouge_cider_in_the_papers_order_with_three_decimals()
    {
        List<StoredRun> runs = [Report(0, "zero-shot", "none", 42, 0.01), Report(1, "ln", "ln", 1, 0.1234), Report(1, "ln", "ln", 2, 0.2234)];
        var rows = ResultsTables.Aggregate(runs);
        Assert.Equal(["test.BLEU_1", "test.BLEU_2", "test.BLEU_3", "test.BLEU_4", "test.ROUGE_L", "test.CIDEr"], rows[1].Metrics.Keys);
        var md = ResultsTables.Markdown("report", rows, runs);
        Assert.Contains("| method | trainable | % | lr | peak mem (MiB) | train s | steps/s | BLEU_1 | BLEU_2 | BLEU_3 | BLEU_4 | ROUGE_L | CIDEr |", md);
        Assert.Contains("| ln | 4 | 0.4000 | 0.01 | 100 | 2.0 | 5.00 | 0.250 ± 0.000 | 0.200 ± 0.000 | 0.150 ± 0.000 | 0.173 ± 0.071 | 0.300 ± 0.000 | 0.673 ± 0.071 |", md);
        Assert.Contains("| zero-shot | 0 | 0.0000 | – | 100 | – | – | 0.250 | 0.200 | 0.150 | 0.010 | 0.300 | 0.510 |", md);
        Assert.DoesNotContain("METEOR", md);
        var csv = ResultsTables.Csv("report", rows, runs).Split('\n');
        Assert.StartsWith("task,dataset,method,model,strategy,seeds,trainable,total,trainable_percent,learning_rate,test_BLEU_1_mean,test_BLEU_1_std,test_BLEU_2_mean", csv[0]);

        // METEOR joins (last) when a run computed it.
        List<StoredRun> withMeteor = [Report(0, "ln", "ln", 1, 0.1, meteor: true)];
        Assert.Contains("| CIDEr | METEOR |", ResultsTables.Markdown("report", ResultsTables.Aggregate(withMeteor), withMeteor));
        // VQA tables in the same output are unchanged (one decimal).
        Assert.Contains("| 80.0 ± 0.0 |", ResultsTables.Markdown("vqa", ResultsTables.Aggregate(Sample()), Sample()));
    }

    [Fact]
    public void Pareto_front_keeps_points_no_other_point_beats_on_both_share_and_score()
    {
        var pts = new List<(double, double)> { (100, 71), (0.4, 62), (40, 56), (1.8, 72), (0.4, 60) };
        Assert.Equal([1, 3], ResultsReport.ParetoFront(pts));
    }

    [Fact]
    public void Report_is_one_offline_html_file_with_the_five_plots_statistics_and_claims()
    {
        var html = ResultsReport.Html("t", ResultsTables.Aggregate(Sample()), Sample());
        Assert.StartsWith("<!DOCTYPE html>", html);
        Assert.Equal(5, html.Split("<svg ").Length - 1);
        Assert.Contains("<h2>The paper's claims</h2>", html);
        Assert.Contains("Δ full [95 % CI]", System.Net.WebUtility.HtmlDecode(html));
        Assert.DoesNotContain("src=\"http", html);
        Assert.DoesNotContain("<script", html);
        Assert.Contains("log scale", html);
        Assert.Contains("Pareto front", html);
        Assert.Contains("training loss per method", html);
        Assert.Contains("peak memory (MiB)", html);
        Assert.Contains("training time (s)", html);
    }

    [Fact]
    public void Lr_sweep_picks_best_validation_breaks_ties_by_loss_and_never_a_diverged_rate()
    {
        Assert.Equal([3e-3, 1e-2, 3e-2, 9e-2, 0.3], LrSweep.Grid("ln"));   // 3e-2 × {1/10, 1/3, 1, 3, 10}, 2 significant digits
        Assert.Equal(0.03, LrSweep.Choose([new(0.01, 60, 1.0), new(0.03, 62, 0.9), new(0.1, null, double.NaN)]));
        Assert.Equal(0.01, LrSweep.Choose([new(0.01, 60, 0.8), new(0.03, 60, 0.9)]));
        Assert.Throws<MedPeftException>(() => LrSweep.Choose([new(1, null, double.NaN)]));
    }
}
