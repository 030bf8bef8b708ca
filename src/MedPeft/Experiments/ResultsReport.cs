using System.Globalization;
using System.Net;
using System.Text;

namespace MedPeft.Experiments;

/// <summary>report.html: one self-contained file (inline SVG, inline CSS, no scripts, no external resources, so it
/// opens offline and renders identically everywhere) with, per task and dataset, the table, the accuracy (or BLEU-4)
/// vs trainable-share scatter on a log x-axis with the Pareto front marked, loss curves per method, and memory and
/// training-time bars. The SVG is written directly: the plots are simple and this keeps the report dependency-free
/// and byte-deterministic for the same results.</summary>
public static class ResultsReport
{
    static readonly CultureInfo Inv = CultureInfo.InvariantCulture;
    static readonly string[] Palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39"];

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
        var sb = new StringBuilder();
        sb.Append("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>").Append(E(title)).Append("</title><style>")
          .Append("body{font-family:sans-serif;margin:24px;color:#222;max-width:1400px}h1{font-size:22px}h2{font-size:18px;margin-top:32px}")
          .Append("table{border-collapse:collapse;font-size:13px;margin:8px 0}td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}td:first-child,th:first-child{text-align:left}")
          .Append(".plots{display:flex;flex-wrap:wrap;gap:16px}.plot{border:1px solid #ddd;background:#fff}.note{color:#666;font-size:12px}")
          .Append("</style></head><body>");
        sb.Append("<h1>").Append(E(title)).Append("</h1><p class=\"note\">").Append(finished.Count).Append(" finished runs; code ")
          .Append(E(string.Join(", ", finished.Select(r => r.Result["code_version"]?.GetValue<string>() ?? "?").Distinct()))).Append("</p>");
        foreach (var group in rows.GroupBy(r => (r.Task, r.Dataset)))
        {
            var part = group.ToList();
            var colors = part.Select((r, i) => (r.Method, Palette[i % Palette.Length])).ToDictionary(x => x.Method, x => x.Item2);
            sb.Append("<h2>").Append(E($"{group.Key.Task} · {group.Key.Dataset}")).Append("</h2>");
            sb.Append(Table(group.Key.Task, part, finished));
            sb.Append("<div class=\"plots\">");
            sb.Append(Scatter(group.Key.Task, part, colors));
            sb.Append(Loss(part, colors));
            sb.Append(Bars("peak memory (MiB)", part.Select(r => (r.Method, r.PeakMemoryMiB)).ToList(), colors, "F0"));
            sb.Append(Bars("training time (s)", part.Where(r => !r.ZeroShot).Select(r => (r.Method, r.TrainSeconds)).ToList(), colors, "F1"));
            sb.Append("</div>");
        }
        sb.Append("</body></html>");
        return sb.ToString();
    }

    static string Table(string task, List<ResultsRow> part, IReadOnlyList<StoredRun> finished)
    {
        // The Markdown table, as HTML.
        var md = ResultsTables.Markdown(task, part, finished).Split('\n').Where(l => l.StartsWith('|')).ToList();
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

    const int W = 560, H = 360, L = 64, R = 16, T = 34, B = 52;

    static StringBuilder Svg(string title)
    {
        var sb = new StringBuilder();
        sb.Append($"<svg class=\"plot\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" font-family=\"sans-serif\" font-size=\"11\">");
        sb.Append($"<text x=\"{W / 2}\" y=\"20\" text-anchor=\"middle\" font-size=\"14\" font-weight=\"bold\">{E(title)}</text>");
        return sb;
    }

    static string N(double x) => x.ToString("0.##", Inv);

    /// <summary>Axis frame with ticks; maps data to pixels.</summary>
    sealed class Frame(double x0, double x1, double y0, double y1)
    {
        public double X(double v) => L + (v - x0) / (x1 - x0 == 0 ? 1 : x1 - x0) * (W - L - R);
        public double Y(double v) => H - B - (v - y0) / (y1 - y0 == 0 ? 1 : y1 - y0) * (H - T - B);

        public void Draw(StringBuilder sb, IEnumerable<(double V, string Label)> xticks, IEnumerable<(double V, string Label)> yticks, string xlabel, string ylabel)
        {
            sb.Append($"<rect x=\"{L}\" y=\"{T}\" width=\"{W - L - R}\" height=\"{H - T - B}\" fill=\"none\" stroke=\"#444\"/>");
            foreach (var (v, label) in xticks)
                sb.Append($"<line x1=\"{N(X(v))}\" y1=\"{T}\" x2=\"{N(X(v))}\" y2=\"{H - B}\" stroke=\"#eee\"/><text x=\"{N(X(v))}\" y=\"{H - B + 15}\" text-anchor=\"middle\">{E(label)}</text>");
            foreach (var (v, label) in yticks)
                sb.Append($"<line x1=\"{L}\" y1=\"{N(Y(v))}\" x2=\"{W - R}\" y2=\"{N(Y(v))}\" stroke=\"#eee\"/><text x=\"{L - 6}\" y=\"{N(Y(v) + 4)}\" text-anchor=\"end\">{E(label)}</text>");
            sb.Append($"<text x=\"{(L + W - R) / 2}\" y=\"{H - 12}\" text-anchor=\"middle\">{E(xlabel)}</text>");
            sb.Append($"<text transform=\"translate(16,{(T + H - B) / 2}) rotate(-90)\" text-anchor=\"middle\">{E(ylabel)}</text>");
        }
    }

    static IEnumerable<(double, string)> LinearTicks(double lo, double hi, int n = 5)
    {
        double step = NiceStep((hi - lo) / n);
        for (double v = Math.Ceiling(lo / step) * step; v <= hi + 1e-9; v += step) yield return (v, v.ToString(step < 1 ? "0.###" : "0", Inv));
    }

    static double NiceStep(double raw)
    {
        if (!(raw > 0)) return 1;
        double p = Math.Pow(10, Math.Floor(Math.Log10(raw)));
        double f = raw / p;
        return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * p;
    }

    static (double Lo, double Hi) Range(IEnumerable<double> values, double pad = 0.08)
    {
        var v = values.Where(double.IsFinite).ToList();
        if (v.Count == 0) return (0, 1);
        double lo = v.Min(), hi = v.Max(), d = hi - lo == 0 ? Math.Max(1, Math.Abs(hi) * 0.1) : hi - lo;
        return (lo - d * pad, hi + d * pad);
    }

    static string Scatter(string task, List<ResultsRow> part, Dictionary<string, string> colors)
    {
        var (key, ytitle) = Headline(task);
        var pts = part.Where(r => r.Trainable > 0 && r.Metrics.ContainsKey(key)).Select(r => (Row: r, Share: r.SharePercent, Score: r.Metrics[key].Mean)).ToList();
        var sb = Svg($"{ytitle.Split(" (")[0]} vs trainable share");
        var zeroShot = part.FirstOrDefault(r => r.ZeroShot && r.Metrics.ContainsKey(key));
        if (pts.Count == 0) return sb.Append("<text x=\"40\" y=\"80\">no fine-tuned runs yet</text></svg>").ToString();
        double lx0 = Math.Floor(Math.Log10(pts.Min(p => p.Share))), lx1 = Math.Ceiling(Math.Log10(pts.Max(p => p.Share)));
        if (lx1 - lx0 < 1) lx1 = lx0 + 1;
        var (y0, y1) = Range(pts.Select(p => p.Score).Append(zeroShot?.Metrics[key].Mean ?? double.NaN));
        var f = new Frame(lx0 - 0.12, lx1 + 0.12, y0, y1);   // padding: a point at 100 % is not cut by the frame
        var xticks = Enumerable.Range((int)lx0, (int)(lx1 - lx0) + 1).Select(e => ((double)e, Math.Pow(10, e).ToString("0.#####", Inv) + "%"));
        f.Draw(sb, xticks, LinearTicks(y0, y1), "trainable parameters (% of model, log scale)", ytitle);
        if (zeroShot is not null)
        {
            double y = f.Y(zeroShot.Metrics[key].Mean);
            sb.Append($"<line x1=\"{L}\" y1=\"{N(y)}\" x2=\"{W - R}\" y2=\"{N(y)}\" stroke=\"#999\" stroke-dasharray=\"5,4\"/><text x=\"{W - R - 4}\" y=\"{N(y - 4)}\" text-anchor=\"end\" fill=\"#777\">zero-shot</text>");
        }
        var front = ParetoFront(pts.Select(p => (p.Share, p.Score)).ToList());
        var path = string.Join(" ", front.Select(i => $"{N(f.X(Math.Log10(pts[i].Share)))},{N(f.Y(pts[i].Score))}"));
        sb.Append($"<polyline points=\"{path}\" fill=\"none\" stroke=\"#d62728\" stroke-width=\"2\" stroke-dasharray=\"6,3\"/>");
        for (int i = 0; i < pts.Count; i++)
        {
            var (row, share, score) = pts[i];
            double x = f.X(Math.Log10(share)), y = f.Y(score);
            bool onFront = front.Contains(i);
            sb.Append($"<circle cx=\"{N(x)}\" cy=\"{N(y)}\" r=\"{(onFront ? 7 : 5)}\" fill=\"{colors[row.Method]}\" stroke=\"{(onFront ? "#d62728" : "#fff")}\" stroke-width=\"2\"><title>{E($"{row.Method}: {score:F1} at {share:G3}%")}</title></circle>");
            bool right = x > W - R - 90;   // labels near the right edge go to the left of their point
            sb.Append($"<text x=\"{N(right ? x - 9 : x + 9)}\" y=\"{N(y - 6)}\" fill=\"#333\" text-anchor=\"{(right ? "end" : "start")}\">{E(row.Method)}</text>");
        }
        sb.Append($"<text x=\"{L + 6}\" y=\"{T + 14}\" fill=\"#d62728\">- - Pareto front (ringed)</text>");
        return sb.Append("</svg>").ToString();
    }

    static string Loss(List<ResultsRow> part, Dictionary<string, string> colors)
    {
        var curves = part.Where(r => r.LossCurve.Count > 0).ToList();
        var sb = Svg("training loss per method (first seed)");
        if (curves.Count == 0) return sb.Append("<text x=\"40\" y=\"80\">no training curves</text></svg>").ToString();
        var (x0, x1) = (0.0, (double)curves.Max(c => c.LossCurve[^1].Step));
        var (y0, y1) = Range(curves.SelectMany(c => c.LossCurve.Select(p => p.Loss)), 0.04);
        y0 = Math.Max(0, y0);
        var f = new Frame(x0, x1, y0, y1);
        f.Draw(sb, LinearTicks(x0, x1), LinearTicks(y0, y1), "optimizer step", "loss");
        // The legend is drawn last, on a translucent box, so curves do not hide it.
        var legend = new StringBuilder($"<rect x=\"{W - R - 156}\" y=\"{T + 2}\" width=\"152\" height=\"{14 * curves.Count + 6}\" fill=\"#fff\" fill-opacity=\"0.85\" stroke=\"#ddd\"/>");
        int k = 0;
        foreach (var c in curves)
        {
            sb.Append($"<polyline points=\"{string.Join(" ", c.LossCurve.Select(p => $"{N(f.X(p.Step))},{N(f.Y(p.Loss))}"))}\" fill=\"none\" stroke=\"{colors[c.Method]}\" stroke-width=\"2\"><title>{E(c.Method)}</title></polyline>");
            if (c.LossCurve.Count <= 25)   // few logged points: mark them so a one-point curve still shows
                foreach (var p in c.LossCurve) sb.Append($"<circle cx=\"{N(f.X(p.Step))}\" cy=\"{N(f.Y(p.Loss))}\" r=\"3\" fill=\"{colors[c.Method]}\"/>");
            double ly = T + 14 + 14 * k++;
            legend.Append($"<line x1=\"{W - R - 150}\" y1=\"{N(ly - 4)}\" x2=\"{W - R - 132}\" y2=\"{N(ly - 4)}\" stroke=\"{colors[c.Method]}\" stroke-width=\"3\"/><text x=\"{W - R - 128}\" y=\"{N(ly)}\">{E(c.Method)}</text>");
        }
        sb.Append(legend);
        return sb.Append("</svg>").ToString();
    }

    static string Bars(string title, List<(string Method, double Value)> bars, Dictionary<string, string> colors, string format)
    {
        var sb = Svg(title);
        if (bars.Count == 0) return sb.Append("<text x=\"40\" y=\"80\">nothing to show</text></svg>").ToString();
        int left = 150;
        double max = bars.Max(b => b.Value), rowH = Math.Min(26, (H - T - 20) / (double)bars.Count);
        for (int i = 0; i < bars.Count; i++)
        {
            var (m, v) = bars[i];
            double y = T + 6 + i * rowH, w = max <= 0 ? 0 : v / max * (W - left - 70);
            sb.Append($"<text x=\"{left - 6}\" y=\"{N(y + rowH * 0.65)}\" text-anchor=\"end\">{E(m)}</text>");
            sb.Append($"<rect x=\"{left}\" y=\"{N(y + 2)}\" width=\"{N(w)}\" height=\"{N(rowH - 5)}\" fill=\"{colors[m]}\"/>");
            sb.Append($"<text x=\"{N(left + w + 4)}\" y=\"{N(y + rowH * 0.65)}\">{v.ToString(format, Inv)}</text>");
        }
        return sb.Append("</svg>").ToString();
    }

    static string E(string s) => WebUtility.HtmlEncode(s);
}
