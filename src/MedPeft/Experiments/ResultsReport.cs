using System.Globalization;
using System.Net;
using System.Text;
using System.Text.RegularExpressions;
using ScottPlot;
using SkiaSharp;

namespace MedPeft.Experiments;

/// <summary>report.html: one self-contained file (inline SVG, inline CSS, no scripts, no external resources, so it
/// opens offline) with, per task and dataset, the table, the headline metric (accuracy or BLEU-4) vs trainable-share
/// scatter on a log10 x-axis with the Pareto front marked and zero-shot as a dashed reference line, loss curves per
/// method, and memory and training-time bars. The plots are drawn with ScottPlot 5 and exported as SVG (text stays
/// &lt;text&gt;, drawn by the browser); ScottPlot lays text out with a TrueType font found on the machine (see
/// <see cref="PlotFont"/>). The same results give the same bytes on the same machine.</summary>
public static class ResultsReport
{
    static readonly CultureInfo Inv = CultureInfo.InvariantCulture;
    static readonly string[] Palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39"];
    const int W = 600, H = 400;
    // The front is near-black, a colour no method has (the palette's red is a method's colour).
    internal static readonly Color FrontColor = Color.FromHex("#222222"), ReferenceColor = Color.FromHex("#777777");

    /// <summary>The headline metric of a task: overall accuracy for VQA, BLEU-4 for report generation.</summary>
    public static (string Key, string Title) Headline(string task) => task == "vqa" ? ("test.overall_acc", "test overall accuracy (%)") : ($"test.{Evaluation.ReportMetrics.Bleu4Key}", "test BLEU-4");

    /// <summary>Indices of the points on the Pareto front (no other point has a smaller-or-equal share and a
    /// larger-or-equal score with one strictly better), ordered by share.</summary>
    public static IReadOnlyList<int> ParetoFront(IReadOnlyList<(double Share, double Score)> points)
    {
        var front = new List<int>();
        for (int i = 0; i < points.Count; i++)
        {
            bool dominated = false;
            for (int j = 0; j < points.Count && !dominated; j++)
                dominated = j != i && points[j].Share <= points[i].Share && points[j].Score >= points[i].Score
                            && (points[j].Share < points[i].Share || points[j].Score > points[i].Score);
            if (!dominated) front.Add(i);
        }
        return front.OrderBy(i => points[i].Share).ToList();
    }

    public static string Html(string title, IReadOnlyList<ResultsRow> rows, IReadOnlyList<StoredRun> finished)
    {
        var stats = StudyStatistics.Compute(finished);
        var sb = new StringBuilder();
        sb.Append("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>").Append(E(title)).Append("</title><style>")
          .Append("body{font-family:sans-serif;margin:24px;color:#222;max-width:1400px}h1{font-size:22px}h2{font-size:18px;margin-top:32px}")
          .Append("table{border-collapse:collapse;font-size:13px;margin:8px 0}td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}td:first-child,th:first-child{text-align:left}")
          .Append(".plots{display:flex;flex-wrap:wrap;gap:16px}.plot{border:1px solid #ddd;background:#fff}.note{color:#666;font-size:12px}")
          .Append("</style></head><body>");
        sb.Append("<h1>").Append(E(title)).Append("</h1><p class=\"note\">").Append(finished.Count).Append(" finished runs; code ")
          .Append(E(string.Join(", ", finished.Select(r => r.Result["code_version"]?.GetValue<string>() ?? "?").Distinct()))).Append("</p>");
        int plotIndex = 0;
        foreach (var group in rows.GroupBy(r => (r.Task, r.Dataset)))
        {
            var part = group.ToList();
            var colors = Colors(part);
            sb.Append("<h2>").Append(E($"{group.Key.Task} · {group.Key.Dataset}")).Append("</h2>");
            sb.Append(Table(group.Key.Task, part, finished));
            sb.Append("<div class=\"plots\">");
            sb.Append(Inline(Scatter(group.Key.Task, part, colors), plotIndex++));
            sb.Append(Inline(Loss(part, colors), plotIndex++));
            sb.Append(Inline(Bars("peak memory (MiB)", "MiB", part.Select(r => (r.Method, r.PeakMemoryMiB)).ToList(), colors, "F0"), plotIndex++));
            sb.Append(Inline(Bars("training time (s)", "seconds", part.Where(r => !r.ZeroShot).Select(r => (r.Method, r.TrainSeconds)).ToList(), colors, "F1"), plotIndex++));
            var partStats = stats.Where(s => s.Task == group.Key.Task && s.Dataset == group.Key.Dataset).ToList();
            if (partStats.Count > 0) sb.Append(Inline(Intervals(group.Key.Task, partStats, colors), plotIndex++));
            sb.Append("</div>");
            sb.Append("<p class=\"note\">Statistics over seeds (95 % t-intervals; Δ full paired by seed).</p>");
            sb.Append(HtmlTable(StudyStatistics.Markdown(partStats)));
        }
        var claims = StudyClaims.Evaluate(stats, finished);
        if (claims.Count > 0)
        {
            sb.Append("<h2>The paper's claims</h2>");
            sb.Append(HtmlTable(StudyClaims.Markdown(claims).Replace("**", "")));
        }
        sb.Append("</body></html>");
        return sb.ToString();
    }

    /// <summary>One colour per method of a task and dataset, in row order, the same in all four plots.</summary>
    internal static Dictionary<string, Color> Colors(IReadOnlyList<ResultsRow> part) =>
        part.Select((r, i) => (r.Method, Color.FromHex(Palette[i % Palette.Length]))).ToDictionary(x => x.Method, x => x.Item2);

    static string Table(string task, List<ResultsRow> part, IReadOnlyList<StoredRun> finished) => HtmlTable(ResultsTables.Markdown(task, part, finished));

    /// <summary>The Markdown tables of a text, as HTML tables.</summary>
    static string HtmlTable(string markdown)
    {
        var md = markdown.Split('\n').Where(l => l.StartsWith('|')).ToList();
        var sb = new StringBuilder("<table>");
        for (int i = 0; i < md.Count; i++)
        {
            if (i == 1) continue;
            var cells = md[i].Trim().Trim('|').Split(" | ").Select(c => c.Trim().Replace("\\|", "|"));
            var tag = i == 0 ? "th" : "td";
            sb.Append("<tr>").Append(string.Concat(cells.Select(c => $"<{tag}>{E(c)}</{tag}>"))).Append("</tr>");
        }
        return sb.Append("</table>").ToString();
    }

    /// <summary>A new plot with the report's font, title and axis labels.</summary>
    static Plot NewPlot(string title, string xlabel, string ylabel)
    {
        var plt = new Plot();
        plt.Font.Set(PlotFont.Family);
        plt.Title(title, 15);
        plt.XLabel(xlabel, 12);
        plt.YLabel(ylabel, 12);
        return plt;
    }

    static Plot Empty(Plot plt, string message)
    {
        var t = plt.Add.Text(message, 0.5, 0.5);
        t.LabelFontSize = 13;
        t.LabelAlignment = Alignment.MiddleCenter;
        plt.Axes.SetLimits(0, 1, 0, 1);
        return plt;
    }

    /// <summary>Headline metric vs trainable share (plots are internal so tests can inspect what is drawn).</summary>
    internal static Plot Scatter(string task, List<ResultsRow> part, Dictionary<string, Color> colors)
    {
        var (key, ytitle) = Headline(task);
        var plt = NewPlot($"{ytitle.Split(" (")[0]} vs trainable share", "trainable parameters (% of model, log scale)", ytitle);
        var pts = part.Where(r => r.Trainable > 0 && r.Metrics.ContainsKey(key)).Select(r => (Row: r, Share: r.SharePercent, Score: r.Metrics[key].Mean)).ToList();
        if (pts.Count == 0) return Empty(plt, "no fine-tuned runs yet");

        // Log axis: points are placed at log10(share %) and the ticks are labelled with the share itself; majors
        // at whole decades, minors at 2..9 × each decade.
        double lx0 = Math.Floor(Math.Log10(pts.Min(p => p.Share))), lx1 = Math.Ceiling(Math.Log10(pts.Max(p => p.Share)));
        if (lx1 - lx0 < 1) lx1 = lx0 + 1;
        var ticks = new ScottPlot.TickGenerators.NumericManual();
        for (int e = (int)lx0; e <= (int)lx1; e++)
        {
            ticks.AddMajor(e, ShareLabel(e));
            if (e < lx1) for (int k = 2; k <= 9; k++) ticks.AddMinor(e + Math.Log10(k));
        }
        plt.Axes.Bottom.TickGenerator = ticks;

        var zeroShot = part.FirstOrDefault(r => r.ZeroShot && r.Metrics.ContainsKey(key));
        if (zeroShot is not null)
        {
            // Zero-shot trains nothing (share 0 has no place on a log axis): a dashed reference line instead.
            var line = plt.Add.HorizontalLine(zeroShot.Metrics[key].Mean, 1.5f, ReferenceColor, LinePattern.Dashed);
            line.LegendText = $"zero-shot ({Score(zeroShot.Metrics[key].Mean)}, 0 trainable)";
        }

        var front = ParetoFront(pts.Select(p => (p.Share, p.Score)).ToList());
        var frontLine = plt.Add.ScatterLine(front.Select(i => Math.Log10(pts[i].Share)).ToArray(), front.Select(i => pts[i].Score).ToArray(), FrontColor);
        frontLine.LineWidth = 2;
        frontLine.LinePattern = LinePattern.Dashed;
        frontLine.LegendText = "Pareto front (ringed)";
        double xLabelFlip = lx1 - 0.25 * (lx1 - lx0);   // labels near the right edge go to the left of their point
        for (int i = 0; i < pts.Count; i++)
        {
            var (row, share, score) = pts[i];
            double x = Math.Log10(share);
            if (front.Contains(i))
            {
                var ring = plt.Add.Marker(x, score, MarkerShape.OpenCircle, 17, FrontColor);
                ring.MarkerLineWidth = 2;
            }
            plt.Add.Marker(x, score, MarkerShape.FilledCircle, 10, colors[row.Method]);
            var label = plt.Add.Text(row.Method, x, score);
            label.LabelFontSize = 11;
            label.LabelFontColor = Color.FromHex("#333333");
            bool left = x > xLabelFlip;
            label.LabelAlignment = left ? Alignment.LowerRight : Alignment.LowerLeft;
            label.LabelOffsetX = left ? -8 : 8;
            label.LabelOffsetY = -4;
        }
        plt.Axes.SetLimitsX(lx0 - 0.15, lx1 + 0.15);   // padding: a point at 100 % is not cut by the frame
        var ys = pts.Select(p => p.Score).Concat(zeroShot is null ? [] : [zeroShot.Metrics[key].Mean]).ToList();
        var (y0, y1) = Padded(ys.Min(), ys.Max(), 0.12);
        plt.Axes.SetLimitsY(y0, y1);
        plt.ShowLegend(Alignment.LowerRight);
        return plt;
    }

    /// <summary>The share at a whole decade, as a percentage label: 0.01%, 0.1%, 1%, 10%, 100%.</summary>
    static string ShareLabel(int decade) => Math.Pow(10, decade).ToString("0.########", Inv) + "%";

    static string Score(double v) => v.ToString(Math.Abs(v) <= 1 ? "0.###" : "0.#", Inv);

    static (double Lo, double Hi) Padded(double lo, double hi, double pad)
    {
        double d = hi - lo == 0 ? Math.Max(Math.Abs(hi) * 0.1, 1e-3) : hi - lo;
        return (lo - d * pad, hi + d * pad);
    }

    internal static Plot Loss(List<ResultsRow> part, Dictionary<string, Color> colors)
    {
        var plt = NewPlot("training loss per method (first seed)", "optimizer step", "loss");
        // A diverged run logs NaN / infinite losses: they are left out (they would break the axis limits).
        var curves = part.Select(r => (r.Method, Points: r.LossCurve.Where(p => double.IsFinite(p.Loss)).ToList())).Where(c => c.Points.Count > 0).ToList();
        if (curves.Count == 0) return Empty(plt, "no training curves");
        foreach (var (method, points) in curves)
        {
            var s = plt.Add.Scatter(points.Select(p => (double)p.Step).ToArray(), points.Select(p => p.Loss).ToArray(), colors[method]);
            s.LineWidth = 2;
            s.MarkerSize = points.Count <= 25 ? 6 : 0;   // few logged points: mark them so a one-point curve still shows
            s.LegendText = method;
        }
        var (y0, y1) = Padded(curves.Min(c => c.Points.Min(p => p.Loss)), curves.Max(c => c.Points.Max(p => p.Loss)), 0.05);
        plt.Axes.SetLimits(0, Math.Max(1, curves.Max(c => c.Points.Max(p => p.Step))) * 1.02, Math.Max(0, y0), y1);
        plt.ShowLegend(Edge.Right);   // beside the data area: with a dozen methods a legend inside hides curves
        return plt;
    }

    internal static Plot Bars(string title, string unit, List<(string Method, double Value)> bars, Dictionary<string, Color> colors, string format)
    {
        var plt = NewPlot(title, unit, "");
        if (bars.Count == 0) return Empty(plt, "nothing to show");
        // Horizontal bars, first method on top; the method names are the y tick labels, the value is written at
        // the end of each bar.
        var ticks = new ScottPlot.TickGenerators.NumericManual();
        var list = new List<Bar>();
        for (int i = 0; i < bars.Count; i++)
        {
            var (m, v) = bars[i];
            double pos = bars.Count - 1 - i;
            list.Add(new Bar { Position = pos, Value = v, FillColor = colors[m], Label = v.ToString(format, Inv), Size = 0.7 });
            ticks.AddMajor(pos, m);
        }
        var bp = plt.Add.Bars(list);
        bp.Horizontal = true;
        bp.ValueLabelStyle.FontSize = 11;
        plt.Axes.Left.TickGenerator = ticks;
        plt.Axes.Left.MajorTickStyle.Length = 0;
        plt.HideGrid();
        double max = bars.Max(b => b.Value);
        plt.Axes.SetLimits(0, max <= 0 ? 1 : max * 1.15, -0.6, bars.Count - 0.4);   // room for the value labels
        return plt;
    }

    /// <summary>Each method's primary metric with its 95 % interval over seeds (error bars; a dot alone for one seed).</summary>
    internal static Plot Intervals(string task, IReadOnlyList<StudyStatistics.MethodStats> stats, Dictionary<string, Color> colors)
    {
        var metric = StudyStatistics.PrimaryMetric(task).Field;
        var plt = NewPlot($"{metric}: mean and 95 % CI over seeds", metric, "");
        var shown = stats.Where(s => double.IsFinite(s.Metric.Mean)).ToList();
        if (shown.Count == 0) return Empty(plt, "nothing to show");
        var ticks = new ScottPlot.TickGenerators.NumericManual();
        double lo = double.MaxValue, hi = double.MinValue;
        for (int i = 0; i < shown.Count; i++)
        {
            var s = shown[i];
            double pos = shown.Count - 1 - i;
            var color = colors.TryGetValue(s.Method, out var c) ? c : ReferenceColor;
            if (s.Metric.Known)
            {
                var bar = plt.Add.Line(s.Metric.Low, pos, s.Metric.High, pos);
                bar.LineWidth = 2; bar.LineColor = color;
                foreach (var end in new[] { s.Metric.Low, s.Metric.High })
                {
                    var cap = plt.Add.Line(end, pos - 0.2, end, pos + 0.2);
                    cap.LineWidth = 2; cap.LineColor = color;
                }
            }
            plt.Add.Marker(s.Metric.Mean, pos, MarkerShape.FilledCircle, 9, color);
            ticks.AddMajor(pos, $"{s.Method} (n={s.Metric.N})");
            lo = Math.Min(lo, s.Metric.Known ? s.Metric.Low : s.Metric.Mean);
            hi = Math.Max(hi, s.Metric.Known ? s.Metric.High : s.Metric.Mean);
        }
        plt.Axes.Left.TickGenerator = ticks;
        plt.Axes.Left.MajorTickStyle.Length = 0;
        double pad = Math.Max((hi - lo) * 0.08, task == "report" ? 0.005 : 0.5);
        plt.Axes.SetLimits(lo - pad, hi + pad, -0.6, shown.Count - 0.4);
        return plt;
    }

    static readonly Regex SvgFontFamily = new("font-family=\"([^\",]+)\"", RegexOptions.Compiled);
    static readonly Regex SvgIdDef = new("id=\"([^\"]+)\"", RegexOptions.Compiled), SvgIdRef = new("(id=\"|url\\(#|href=\"#)([^\")]+)", RegexOptions.Compiled);

    /// <summary>The plot as inline SVG for the page: no XML declaration, the report's class on the root element,
    /// sans-serif as the fallback font, and ids (Skia's clip paths) renamed p{plot}-c{n} in order of appearance.
    /// Skia numbers clip paths from a process-wide counter, so the raw ids change from one rendering to the next
    /// (the page would not be byte-deterministic), and ids inside inline SVGs share the page's single id space
    /// (two plots' clip paths could collide).</summary>
    static string Inline(Plot plt, int index)
    {
        string svg;
        using (plt) svg = plt.GetSvgXml(W, H);
        int start = svg.IndexOf("<svg", StringComparison.Ordinal);
        if (start < 0) throw new InvalidOperationException("ScottPlot returned no <svg> element");
        svg = svg[start..].Trim();
        var ids = new Dictionary<string, string>();
        foreach (Match m in SvgIdDef.Matches(svg)) ids.TryAdd(m.Groups[1].Value, $"p{index}-c{ids.Count}");
        svg = SvgIdRef.Replace(svg, m => ids.TryGetValue(m.Groups[2].Value, out var id) ? m.Groups[1].Value + id : m.Value);
        // A browser without the layout font falls back to a sans-serif one rather than its default serif.
        svg = SvgFontFamily.Replace(svg, m => $"font-family=\"{m.Groups[1].Value}, sans-serif\"");
        return "<svg class=\"plot\"" + svg[4..];
    }

    static string E(string s) => WebUtility.HtmlEncode(s);

    /// <summary>The TrueType font the plots are laid out with. The SkiaSharp native build the project uses
    /// (NativeAssets.Linux.NoDependencies) has no fontconfig, so Skia sees no system fonts and ScottPlot would
    /// measure and emit every label as empty. The font is therefore a file: MEDPEFT_REPORT_FONT if set, else DejaVu
    /// Sans shipped inside the assembly (written once to the temp folder, which ScottPlot's loader needs) — the same
    /// layout, hence the same bytes, on every machine.</summary>
    internal static class PlotFont
    {
        static readonly Lazy<string> Resolved = new(() => Resolve(Environment.GetEnvironmentVariable("MEDPEFT_REPORT_FONT")));

        /// <summary>The family name the plots use (registered with ScottPlot on first use).</summary>
        public static string Family => Resolved.Value;

        const string Bundled = "MedPeft.Fonts.DejaVuSans.ttf";

        internal static string Resolve(string? env)
        {
            if (!string.IsNullOrEmpty(env))
                return Register(env, null) ?? throw new MedPeftException($"MEDPEFT_REPORT_FONT={env}: not a readable TrueType/OpenType font file");
            return Register(BundledFile(), null) ?? throw new MedPeftException($"report.html: the bundled font {Bundled} could not be loaded");
        }

        /// <summary>The bundled font as a file, named by its content hash so concurrent processes and versions
        /// never see a half-written or different file (written to a temporary name, then renamed).</summary>
        static string BundledFile()
        {
            using var stream = typeof(PlotFont).Assembly.GetManifestResourceStream(Bundled)
                ?? throw new MedPeftException($"report.html: resource {Bundled} missing from MedPeft.dll");
            var bytes = new byte[stream.Length];
            stream.ReadExactly(bytes);
            var hash = Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(bytes))[..16];
            var path = Path.Combine(Path.GetTempPath(), $"medpeft-DejaVuSans-{hash}.ttf");
            if (!File.Exists(path) || new FileInfo(path).Length != bytes.Length)
            {
                var tmp = $"{path}.{Environment.ProcessId}.tmp";
                File.WriteAllBytes(tmp, bytes);
                File.Move(tmp, path, overwrite: true);
            }
            return path;
        }

        /// <summary>Registers a regular (and optional bold) font file with ScottPlot under the family name inside
        /// the file; null if the file is not a usable font.</summary>
        static string? Register(string regular, string? bold)
        {
            if (!File.Exists(regular)) return null;
            using var tf = SKTypeface.FromFile(regular);
            if (tf is null || tf.GlyphCount == 0) return null;
            string family = tf.FamilyName;
            // Titles are bold: without a bold file the regular one serves for them too (ScottPlot would otherwise
            // look the bold face up among the system fonts, which are empty here).
            Fonts.AddFontFile(family, regular, false, false);
            Fonts.AddFontFile(family, bold is not null && File.Exists(bold) ? bold : regular, true, false);
            return family;
        }
    }
}
