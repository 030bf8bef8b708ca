using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using MedPeft.Evaluation;

namespace MedPeft.Experiments;

/// <summary>One row of a study table: a method on a dataset, aggregated over its seeds.</summary>
public sealed record ResultsRow(string Task, string Dataset, string Method, string Model, string Strategy, int FirstIndex, int Seeds,
    long Trainable, long Total, double? LearningRate, double PeakMemoryMiB, double TrainSeconds, double StepsPerSecond, double WallSeconds,
    IReadOnlyDictionary<string, (double Mean, double Std)> Metrics, IReadOnlyList<(int Step, double Loss)> LossCurve)
{
    public double SharePercent => Total == 0 ? 0 : 100.0 * Trainable / Total;
    public bool ZeroShot => Strategy == StudyStrategy.ZeroShot;
}

/// <summary>The paper-style tables of a study (method, trainable count and %, memory, time, metrics as mean ± std over
/// seeds) from the finished runs in the store, as Markdown and CSV per task, plus results.json (one object per run,
/// the flat schema `medpeft study` has always written).</summary>
public static class ResultsTables
{
    static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    /// <summary>The metric columns of a task: (key in the result's metrics, field, column title).</summary>
    public static IReadOnlyList<(string Split, string Field, string Title)> MetricColumns(string task, IEnumerable<StoredRun> runs)
    {
        var extras = runs.SelectMany(r => r.Result["metrics"]!.AsObject().Select(m => m.Key)).Where(k => k.StartsWith("extra:")).Distinct().Order(StringComparer.Ordinal).ToList();
        if (task == "report")
        {
            // The papers' order; METEOR only when some run computed it (it needs the official jar).
            var keys = new List<string> { ReportMetrics.Bleu1Key, ReportMetrics.Bleu2Key, ReportMetrics.Bleu3Key, ReportMetrics.Bleu4Key, ReportMetrics.RougeLKey, ReportMetrics.CiderKey };
            if (runs.Any(r => Number(r.Result["metrics"]?["test"]?[ReportMetrics.MeteorKey]) is not null)) keys.Add(ReportMetrics.MeteorKey);
            var report = keys.Select(k => ("test", k, k)).ToList();
            report.AddRange(extras.Select(e => (e, ReportMetrics.Bleu4Key, $"{e[6..]} {ReportMetrics.Bleu4Key}")));
            return report;
        }
        if (task != "vqa")   // another task: whatever numeric fields its runner stores, per split
            return runs.SelectMany(r => r.Result["metrics"]!.AsObject().SelectMany(s => s.Value!.AsObject().Where(f => Number(f.Value) is not null).Select(f => (s.Key, f.Key, $"{s.Key} {f.Key}")))).Distinct().ToList();
        var cols = new List<(string, string, string)>
        {
            ("test", "closed_acc", "closed"), ("test", "open_acc", "open"), ("test", "overall_acc", "overall"), ("test", "open_token_recall", "open recall"),
        };
        foreach (var extra in extras)
            cols.Add((extra, "overall_acc", $"{extra[6..]} overall"));
        return cols;
    }

    public static List<ResultsRow> Aggregate(IEnumerable<StoredRun> finished)
    {
        var rows = new List<ResultsRow>();
        foreach (var g in finished.GroupBy(r => (Task: Str(r, "task"), Dataset: Str(r, "dataset"), Method: r.Method)))
        {
            var runs = g.OrderBy(r => r.Result["seed"]!.GetValue<long>()).ToList();
            var first = runs[0].Result;
            var metrics = new Dictionary<string, (double, double)>();
            foreach (var (split, field, _) in MetricColumns(g.Key.Task, runs))
            {
                var values = runs.Select(r => Number(r.Result["metrics"]?[split]?[field]) ?? double.NaN).Where(double.IsFinite).ToList();
                if (values.Count > 0) metrics[$"{split}.{field}"] = (values.Average(), Std(values));
            }
            double Mean(string f) => runs.Average(r => Number(r.Result[f]) ?? 0);
            rows.Add(new ResultsRow(g.Key.Task, g.Key.Dataset, g.Key.Method, Str(runs[0], "model"), Str(runs[0], "strategy"), runs.Min(r => r.Index), runs.Count,
                first["trainable"]!.GetValue<long>(), first["total"]!.GetValue<long>(),
                first["strategy"]!.GetValue<string>() == StudyStrategy.ZeroShot ? null : Number(first["learning_rate"]),
                Mean("peak_memory_bytes") / (1024.0 * 1024), Mean("train_seconds"), Mean("steps_per_second"), Mean("wall_seconds"), metrics,
                first["loss_curve"]!.AsArray().Select(p => (p![0]!.GetValue<int>(), p[1]!.GetValue<double>())).ToList()));
        }
        return rows.OrderBy(r => r.Task).ThenBy(r => r.Dataset).ThenBy(r => r.FirstIndex).ToList();
    }

    static string Str(StoredRun r, string f) => r.Result[f]!.GetValue<string>();

    /// <summary>A JSON number of any CLR backing (long, double) as double; null for null / non-numbers.</summary>
    public static double? Number(JsonNode? n) =>
        n is JsonValue v && v.GetValueKind() == System.Text.Json.JsonValueKind.Number ? double.Parse(v.ToJsonString(), CultureInfo.InvariantCulture) : null;

    /// <summary>Sample standard deviation (n − 1); 0 for one seed.</summary>
    public static double Std(IReadOnlyList<double> xs)
    {
        if (xs.Count < 2) return 0;
        double m = xs.Average();
        return Math.Sqrt(xs.Sum(x => (x - m) * (x - m)) / (xs.Count - 1));
    }

    static string Share(double pct) => pct.ToString(pct < 1 ? "F4" : "F2", Inv);

    /// <summary>How a task's metrics are printed: accuracies in % with one decimal; report-generation scores are in
    /// [0, 1] (CIDEr-D a little above) and papers print them with three (BLEU-4 0.xxx).</summary>
    public static string MetricFormat(string task) => task == "report" ? "F3" : "F1";

    public static string MeanStd((double Mean, double Std) v, int seeds, string task = "vqa")
    {
        var f = MetricFormat(task);
        return seeds > 1 ? $"{v.Mean.ToString(f, Inv)} ± {v.Std.ToString(f, Inv)}" : v.Mean.ToString(f, Inv);
    }

    public static string Markdown(string task, IReadOnlyList<ResultsRow> rows, IEnumerable<StoredRun> finished)
    {
        var cols = MetricColumns(task, finished.Where(r => Str(r, "task") == task));
        var sb = new StringBuilder();
        foreach (var dataset in rows.Select(r => r.Dataset).Distinct())
        {
            var part = rows.Where(r => r.Dataset == dataset).ToList();
            int seeds = part.Max(r => r.Seeds);
            sb.AppendLine($"### {task} · {dataset}" + (seeds > 1 ? $" (mean ± std over {seeds} seeds)" : ""));
            sb.AppendLine();
            var head = new List<string> { "method", "trainable", "%", "lr", "peak mem (MiB)", "train s", "steps/s" };
            head.AddRange(cols.Select(c => c.Title));
            sb.AppendLine("| " + string.Join(" | ", head) + " |");
            sb.AppendLine("|" + string.Join("|", head.Select((_, i) => i == 0 ? "---" : "---:")) + "|");
            foreach (var r in part)
            {
                var cells = new List<string>
                {
                    r.Method.Replace("|", "\\|"), r.Trainable.ToString("N0", Inv), Share(r.SharePercent), r.LearningRate?.ToString("G3", Inv) ?? "–",
                    r.PeakMemoryMiB.ToString("F0", Inv), r.ZeroShot ? "–" : r.TrainSeconds.ToString("F1", Inv), r.ZeroShot ? "–" : r.StepsPerSecond.ToString("F2", Inv),
                };
                cells.AddRange(cols.Select(c => r.Metrics.TryGetValue($"{c.Split}.{c.Field}", out var v) ? MeanStd(v, r.Seeds, task) : "–"));
                sb.AppendLine("| " + string.Join(" | ", cells) + " |");
            }
            sb.AppendLine();
        }
        return sb.ToString();
    }

    /// <summary>Timing columns (memory, seconds, steps/s) are the last ones, after every deterministic column.</summary>
    public static readonly string[] TimingColumns = ["peak_memory_mib", "train_seconds", "steps_per_second", "wall_seconds"];

    public static string Csv(string task, IReadOnlyList<ResultsRow> rows, IEnumerable<StoredRun> finished)
    {
        var cols = MetricColumns(task, finished.Where(r => Str(r, "task") == task));
        var sb = new StringBuilder();
        var head = new List<string> { "task", "dataset", "method", "model", "strategy", "seeds", "trainable", "total", "trainable_percent", "learning_rate" };
        foreach (var c in cols) { head.Add($"{c.Split}_{c.Field}_mean"); head.Add($"{c.Split}_{c.Field}_std"); }
        head.AddRange(TimingColumns);
        sb.AppendLine(string.Join(",", head.Select(Quote)));
        foreach (var r in rows)
        {
            var cells = new List<string> { r.Task, r.Dataset, r.Method, r.Model, r.Strategy, r.Seeds.ToString(Inv), r.Trainable.ToString(Inv), r.Total.ToString(Inv),
                r.SharePercent.ToString("R", Inv), r.LearningRate?.ToString("R", Inv) ?? "" };
            foreach (var c in cols)
            {
                bool has = r.Metrics.TryGetValue($"{c.Split}.{c.Field}", out var v);
                cells.Add(has ? v.Mean.ToString("R", Inv) : ""); cells.Add(has ? v.Std.ToString("R", Inv) : "");
            }
            cells.AddRange([r.PeakMemoryMiB.ToString("F1", Inv), r.TrainSeconds.ToString("F3", Inv), r.StepsPerSecond.ToString("F3", Inv), r.WallSeconds.ToString("F3", Inv)]);
            sb.AppendLine(string.Join(",", cells.Select(Quote)));
        }
        return sb.ToString();
    }

    static string Quote(string s) => s.IndexOfAny([',', '"', '\n']) >= 0 ? "\"" + s.Replace("\"", "\"\"") + "\"" : s;

    /// <summary>results.json: one flat object per finished run in plan order (strategy = the method's table name,
    /// test metrics at the top level as before, the full record under "metrics").</summary>
    public static string ResultsJson(IEnumerable<StoredRun> finished, IReadOnlyList<StudyStatistics.MethodStats>? stats = null)
    {
        var array = new JsonArray();
        stats ??= StudyStatistics.Compute(finished);
        foreach (var r in finished.OrderBy(r => r.Index))
        {
            var o = r.Result.DeepClone().AsObject();
            o["strategy"] = r.Method;
            o["strategy_spec"] = r.Result["strategy"]!.GetValue<string>();
            o["run_key"] = r.Key;
            o["run_index"] = r.Index;
            foreach (var (k, v) in r.Result["metrics"]?["test"]?.AsObject() ?? new JsonObject()) o[k] = v?.DeepClone();
            o["config"] = r.Config.DeepClone();
            // The method's statistics over all its seeds (mean and 95 % CI, paired difference to full, families).
            var task = r.Result["task"]!.GetValue<string>();
            var dataset = r.Result["dataset"]!.GetValue<string>();
            if (stats.FirstOrDefault(s => s.Task == task && s.Dataset == dataset && s.Method == r.Method) is { } ms)
                o["method_statistics"] = StudyStatistics.ToJson(ms);
            array.Add(o);
        }
        return array.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }

    /// <summary>Writes results.json, table-TASK.md / .csv and report.html into the output folder (atomically);
    /// returns the files written.</summary>
    public static IReadOnlyList<string> WriteAll(string outDir, string title, IReadOnlyList<StoredRun> finished)
    {
        var files = new List<string>();
        void Put(string name, string text) { var p = Path.Combine(outDir, name); AtomicFile.WriteAllText(p, text); files.Add(p); }
        var stats = StudyStatistics.Compute(finished);
        Put("results.json", ResultsJson(finished, stats));
        var rows = Aggregate(finished);
        foreach (var task in rows.Select(r => r.Task).Distinct())
        {
            var taskRows = rows.Where(r => r.Task == task).ToList();
            Put($"table-{task}.md", Markdown(task, taskRows, finished) + StudyStatistics.Markdown(stats.Where(s => s.Task == task).ToList()));
            Put($"table-{task}.csv", Csv(task, taskRows, finished));
        }
        var claims = StudyClaims.Evaluate(stats, finished);
        Put("claims.json", StudyClaims.ToJson(claims).ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        Put("claims.md", StudyClaims.Markdown(claims));
        Put("report.html", ResultsReport.Html(title, rows, finished));
        return files;
    }
}
