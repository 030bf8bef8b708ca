using System.Net;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using MedPeft.Experiments;
using ScottPlot;

namespace MedPeft.Tests.Experiments;

/// <summary>report.html's ScottPlot charts: what each plot draws (inspected on the ScottPlot objects) and what the
/// page carries (the inline SVG's text, markers, ids, and nothing external).</summary>
public class ResultsReportTests
{
    static StoredRun Run(string task, string dataset, int index, string method, string strategy, long trainable, long total, JsonObject test, double[] losses)
    {
        var curve = new JsonArray();
        for (int i = 0; i < losses.Length; i++) curve.Add(new JsonArray(5 * (i + 1), losses[i]));
        var result = new JsonObject
        {
            ["method"] = method, ["strategy"] = strategy, ["model"] = "m", ["dataset"] = dataset, ["task"] = task, ["seed"] = 42L,
            ["learning_rate"] = 0.01, ["trainable"] = trainable, ["total"] = total, ["steps"] = 5 * losses.Length, ["train_seconds"] = 2.0 + index,
            ["steps_per_second"] = 5.0, ["peak_memory_bytes"] = (100L + index) * 1024 * 1024, ["wall_seconds"] = 3.0, ["code_version"] = "git:abc",
            ["metrics"] = new JsonObject { ["test"] = test }, ["loss_curve"] = curve,
        };
        return new StoredRun($"{task}-{index}", index, method, new JsonObject(), result, "w", 0);
    }

    static JsonObject Vqa(double overall) => new() { ["overall_acc"] = overall, ["closed_acc"] = overall + 5, ["open_acc"] = overall - 5, ["open_token_recall"] = overall };

    static JsonObject Report(double bleu4) => new()
    {
        ["BLEU_1"] = bleu4 * 3, ["BLEU_2"] = bleu4 * 2, ["BLEU_3"] = bleu4 * 1.4, ["BLEU_4"] = bleu4, ["ROUGE_L"] = bleu4 * 2.5, ["CIDEr"] = bleu4 * 1.5,
    };

    // Shares 100 %, 0.4 %, 40 %, 1.8 %, 0.4 %: the front is ln (0.4 %, 62) and lora (1.8 %, 72), as in the ParetoFront test.
    static List<StoredRun> VqaRuns() =>
    [
        Run("vqa", "slake", 0, "zero-shot", "none", 0, 1000, Vqa(40), []),
        Run("vqa", "slake", 1, "full", "full", 1000, 1000, Vqa(71), [2.0, 1.2, 0.8]),
        Run("vqa", "slake", 2, "ln", "ln", 4, 1000, Vqa(62), [2.1, 1.5, 1.1]),
        Run("vqa", "slake", 3, "ffn", "ffn", 400, 1000, Vqa(56), [2.2, 1.6, 1.3]),
        Run("vqa", "slake", 4, "lora", "lora", 18, 1000, Vqa(72), [2.0, 1.3, 0.9]),
        Run("vqa", "slake", 5, "ia3", "ia3", 4, 1000, Vqa(60), [2.3, double.NaN, 1.4]),
    ];

    static List<StoredRun> ReportRuns() =>
    [
        Run("report", "iu-xray", 0, "zero-shot", "none", 0, 2000, Report(0.021), []),
        Run("report", "iu-xray", 1, "full", "full", 2000, 2000, Report(0.142), [4.0, 2.5, 1.9]),
        Run("report", "iu-xray", 2, "ln", "ln", 2, 2000, Report(0.118), [4.1, 2.9, 2.2]),
        Run("report", "iu-xray", 3, "prompt", "prompt", 20, 2000, Report(0.061), [4.2, 3.5, 3.1]),
    ];

    static List<string> Svgs(string html) => Regex.Matches(html, "<svg .*?</svg>", RegexOptions.Singleline).Select(m => m.Value).ToList();

    static List<string> Texts(string svg) =>
        Regex.Matches(svg, "<text[^>]*>([^<]*)</text>").Select(m => WebUtility.HtmlDecode(m.Groups[1].Value).Trim()).ToList();

    static int Count(string s, string what) => s.Split(what).Length - 1;

    [Fact]
    public void Scatter_marks_each_tuned_method_at_its_log_share_rings_the_Pareto_front_and_draws_zero_shot_as_a_line()
    {
        var rows = ResultsTables.Aggregate(VqaRuns());
        var colors = ResultsReport.Colors(rows);
        using var plt = ResultsReport.Scatter("vqa", rows, colors);
        var markers = plt.GetPlottables<ScottPlot.Plottables.Marker>().ToList();
        var dots = markers.Where(m => m.MarkerShape == MarkerShape.FilledCircle).ToList();
        var tuned = rows.Where(r => !r.ZeroShot).ToList();
        Assert.Equal(tuned.Count, dots.Count);   // zero-shot (0 trainable) has no place on a log axis
        foreach (var (row, dot) in tuned.Zip(dots))
        {
            Assert.Equal(Math.Log10(row.SharePercent), dot.X, 9);
            Assert.Equal(row.Metrics["test.overall_acc"].Mean, dot.Y, 9);
            Assert.Equal(colors[row.Method], dot.MarkerFillColor);
        }
        var rings = markers.Where(m => m.MarkerShape == MarkerShape.OpenCircle).Select(m => (m.X, m.Y)).ToList();
        Assert.Equal([(Math.Log10(0.4), 62.0), (Math.Log10(1.8), 72.0)], rings);
        var front = Assert.Single(plt.GetPlottables<ScottPlot.Plottables.Scatter>());
        Assert.Equal([(Math.Log10(0.4), 62.0), (Math.Log10(1.8), 72.0)], front.Data.GetScatterPoints().Select(c => (c.X, c.Y)));
        Assert.Equal(40, Assert.Single(plt.GetPlottables<ScottPlot.Plottables.HorizontalLine>()).Y, 9);
        Assert.Equal(tuned.Select(r => r.Method), plt.GetPlottables<ScottPlot.Plottables.Text>().Select(t => t.LabelText));

        plt.RenderInMemory(600, 400);   // tick generators hand out their ticks after a render
        var ticks = Assert.IsType<ScottPlot.TickGenerators.NumericManual>(plt.Axes.Bottom.TickGenerator).Ticks;
        Assert.Equal(["0.1%", "1%", "10%", "100%"], ticks.Where(t => t.IsMajor).Select(t => t.Label));
        Assert.Equal([-1.0, 0, 1, 2], ticks.Where(t => t.IsMajor).Select(t => t.Position));
        Assert.Equal(3 * 8, ticks.Count(t => !t.IsMajor));   // 2..9 × each of the three decades
    }

    [Fact]
    public void Page_inlines_four_svg_plots_with_labels_markers_unique_ids_and_nothing_external()
    {
        var runs = VqaRuns();
        var rows = ResultsTables.Aggregate(runs);
        var html = ResultsReport.Html("study", rows, runs);
        Assert.Equal(html, ResultsReport.Html("study", rows, runs));   // same results, same bytes
        var svgs = Svgs(html);
        Assert.Equal(5, svgs.Count);   // + each method's metric with its interval over seeds
        Assert.Contains("overall_acc: mean and 95 % CI over seeds", Texts(svgs[4]));
        Assert.All(svgs, s => Assert.StartsWith("<svg class=\"plot\"", s));

        var scatter = Texts(svgs[0]);
        Assert.Contains("test overall accuracy vs trainable share", scatter);
        Assert.Contains("trainable parameters (% of model, log scale)", scatter);
        Assert.Contains("Pareto front (ringed)", scatter);
        Assert.Contains("zero-shot (40, 0 trainable)", scatter);
        foreach (var label in new[] { "0.1%", "1%", "10%", "100%", "full", "ln", "ffn", "lora", "ia3" }) Assert.Contains(label, scatter);
        Assert.DoesNotContain("zero-shot", scatter);   // only in the reference line's legend entry
        var colors = ResultsReport.Colors(rows);
        foreach (var r in rows.Where(r => !r.ZeroShot))   // one marker per method, in its colour
            Assert.Equal(1, Count(svgs[0], $"fill=\"#{colors[r.Method].R:X2}{colors[r.Method].G:X2}{colors[r.Method].B:X2}\""));

        var loss = Texts(svgs[1]);
        Assert.Contains("training loss per method (first seed)", loss);
        Assert.Equal(["full", "ln", "ffn", "lora", "ia3"], loss.Where(t => rows.Any(r => r.Method == t)));   // legend, zero-shot has no curve
        Assert.Contains("peak memory (MiB)", Texts(svgs[2]));
        Assert.Contains("103", Texts(svgs[2]));   // ffn's bar value (index 3)
        var time = Texts(svgs[3]);
        Assert.Contains("training time (s)", time);
        Assert.DoesNotContain("zero-shot", time);
        Assert.Contains("6.0", time);   // lora's 2 + 4 s

        Assert.Matches("font-family=\"[^\"]+, sans-serif\"", svgs[0]);   // labels are text, with a fallback font
        Assert.DoesNotMatch("font-family=\"[^\",]+\"", html);
        Assert.DoesNotContain("<script", html, StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain(" src=", html);
        Assert.DoesNotContain("@import", html);
        // The only URLs are the SVG and XLink namespace names, which nothing fetches.
        Assert.Equal(["http://www.w3.org/1999/xlink", "http://www.w3.org/2000/svg"],
            Regex.Matches(html, "https?://[^\"'\\s)]*").Select(m => m.Value).Distinct().Order(StringComparer.Ordinal));
        var ids = Regex.Matches(html, " id=\"([^\"]+)\"").Select(m => m.Groups[1].Value).ToList();
        Assert.NotEmpty(ids);
        Assert.Equal(ids.Count, ids.Distinct().Count());   // inline SVGs share the page's id space
        foreach (Match m in Regex.Matches(html, "url\\(#([^)]+)\\)")) Assert.Contains(m.Groups[1].Value, ids);
    }

    [Fact]
    public void Report_generation_plots_BLEU4_in_the_unit_range_next_to_the_VQA_plots()
    {
        Assert.Equal(("test.BLEU_4", "test BLEU-4"), ResultsReport.Headline("report"));
        var runs = VqaRuns().Concat(ReportRuns()).ToList();
        var rows = ResultsTables.Aggregate(runs);
        var reportRows = rows.Where(r => r.Task == "report").ToList();
        using (var plt = ResultsReport.Scatter("report", reportRows, ResultsReport.Colors(reportRows)))
        {
            var dots = plt.GetPlottables<ScottPlot.Plottables.Marker>().Where(m => m.MarkerShape == MarkerShape.FilledCircle).Select(m => m.Y).ToList();
            Assert.Equal([0.142, 0.118, 0.061], dots);
            Assert.Equal(0.021, Assert.Single(plt.GetPlottables<ScottPlot.Plottables.HorizontalLine>()).Y, 9);
            var limits = plt.Axes.GetLimits();
            Assert.InRange(limits.Bottom, 0, 0.021);   // the axis spans the scores (zero-shot included), not 0..100
            Assert.InRange(limits.Top, 0.142, 0.2);
        }

        var html = ResultsReport.Html("study", rows, runs);
        var svgs = Svgs(html);
        Assert.Equal(10, svgs.Count);
        Assert.Contains("<h2>report · iu-xray</h2>", WebUtility.HtmlDecode(html));
        var scatter = Texts(svgs[0]);   // tasks in name order: report first
        Assert.Contains("test BLEU-4 vs trainable share", scatter);
        Assert.Contains("test BLEU-4", scatter);
        Assert.Contains("zero-shot (0.021, 0 trainable)", scatter);
        foreach (var label in new[] { "0.1%", "1%", "10%", "100%", "full", "ln", "prompt" }) Assert.Contains(label, scatter);
        var yTicks = scatter.Where(t => Regex.IsMatch(t, "^[0-9.]+$")).Select(t => double.Parse(t, System.Globalization.CultureInfo.InvariantCulture)).ToList();
        Assert.NotEmpty(yTicks);
        Assert.All(yTicks, y => Assert.InRange(y, 0, 0.2));
        Assert.Contains("test overall accuracy vs trainable share", Texts(svgs[5]));
    }

    [Fact]
    public void Plots_with_nothing_to_draw_say_so_and_diverged_losses_are_left_out()
    {
        var onlyZeroShot = VqaRuns().Take(1).ToList();
        var svgs = Svgs(ResultsReport.Html("study", ResultsTables.Aggregate(onlyZeroShot), onlyZeroShot));
        Assert.Equal(5, svgs.Count);
        Assert.Contains("no fine-tuned runs yet", Texts(svgs[0]));
        Assert.Contains("no training curves", Texts(svgs[1]));
        Assert.Contains("zero-shot", Texts(svgs[2]));   // its memory bar
        Assert.Contains("nothing to show", Texts(svgs[3]));

        var one = VqaRuns().Take(2).ToList();   // one tuned run: a one-point front over a one-decade axis
        var oneRows = ResultsTables.Aggregate(one);
        using (var single = ResultsReport.Scatter("vqa", oneRows, ResultsReport.Colors(oneRows)))
        {
            Assert.Equal(2, single.GetPlottables<ScottPlot.Plottables.Marker>().Count());   // the dot and its ring
            Assert.Contains("100%", Texts(Svgs(ResultsReport.Html("study", oneRows, one))[0]));
        }

        var rows = ResultsTables.Aggregate(VqaRuns());
        using var plt = ResultsReport.Loss(rows, ResultsReport.Colors(rows));
        var ia3 = plt.GetPlottables<ScottPlot.Plottables.Scatter>().Single(s => s.LegendText == "ia3");
        Assert.Equal([(5.0, 2.3), (15.0, 1.4)], ia3.Data.GetScatterPoints().Select(c => (c.X, c.Y)));
    }

    [Fact]
    public void A_font_override_that_is_not_a_font_is_a_one_line_error_naming_the_variable()
    {
        var path = Path.Combine(Path.GetTempPath(), $"medpeft-not-a-font-{Guid.NewGuid():N}.ttf");
        File.WriteAllText(path, "not a font");
        try
        {
            var e = Assert.Throws<MedPeftException>(() => ResultsReport.PlotFont.Resolve(path));
            Assert.StartsWith($"MEDPEFT_REPORT_FONT={path}:", e.Message);
            Assert.DoesNotContain('\n', e.Message);
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void Without_an_override_the_plots_use_the_font_shipped_in_the_assembly()
    {
        // No system font lookup: the same layout on a machine without fonts (CI) as here.
        Assert.Equal("DejaVu Sans", ResultsReport.PlotFont.Resolve(null));
        Assert.Equal("DejaVu Sans", ResultsReport.PlotFont.Resolve(""));
    }
}
