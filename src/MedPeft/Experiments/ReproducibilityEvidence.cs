using System.Security.Cryptography;
using System.Text.Json.Nodes;

namespace MedPeft.Experiments;

/// <summary>The checked-in evidence of cross-machine reproducibility (docs/reproducibility/quick-study-scores.json):
/// what <c>medpeft study --quick --reproducible</c> measured on one processor — every run's test metrics, selection score
/// and last training loss, plus SHA-256 digests of the generated benchmark and of the pretrained weights, so that a
/// machine that disagrees also learns at which stage (data, pretraining, fine-tuning) it first did.</summary>
public static class ReproducibilityEvidence
{
    public const string Command = "medpeft study --quick --reproducible";

    /// <summary>The evidence of one finished study: its results.json rows and the benchmark folder it ran on
    /// (CACHE/bench-quick-reproducible).</summary>
    public static JsonObject Make(JsonArray results, string benchDir)
    {
        var runs = new JsonObject();
        foreach (var row in results.Select(r => r!.AsObject()))
        {
            var test = row["metrics"]?["test"]?.AsObject() ?? throw new MedPeftException($"results.json: run {row["method"]} has no test metrics");
            var scores = new JsonObject(test.Where(m => m.Value is JsonValue v && v.TryGetValue<double>(out _)).OrderBy(m => m.Key, StringComparer.Ordinal)
                .Select(m => KeyValuePair.Create(m.Key, m.Value!.DeepClone())));
            scores["best_validation"] = row["best_validation_acc"]?.DeepClone();
            scores["final_loss"] = row["loss_curve"] is JsonArray { Count: > 0 } curve ? curve[^1]![1]!.DeepClone() : null;
            runs[RunName(row)] = scores;
        }
        return new JsonObject
        {
            ["command"] = Command,
            ["code_version"] = results.FirstOrDefault()?["code_version"]?.DeepClone(),
            ["cpu"] = CpuInfo.Model(),
            ["cpu_flags"] = CpuInfo.FlagsSummary(),
            ["benchmark_sha256"] = BenchmarkDigest(benchDir),
            ["pretrained_sha256"] = PretrainedDigest(benchDir),
            ["runs"] = runs,
        };
    }

    /// <summary>"task · method · seed N": one run's name in the evidence.</summary>
    public static string RunName(JsonNode row) =>
        $"{row["task"]!.GetValue<string>()} · {row["method"]!.GetValue<string>()} · seed {row["seed"]!.GetValue<long>()}";

    /// <summary>Every difference between the checked-in evidence and this machine's, one line each, the earliest stage
    /// first (an empty list: identical). Numbers are compared exactly; a digest the file leaves null and runs it does not
    /// list are not checked (a partial record).</summary>
    public static List<string> Differences(JsonObject expected, JsonObject actual)
    {
        var found = new List<string>();
        foreach (var (field, stage) in new[] { ("benchmark_sha256", "generated benchmark"), ("pretrained_sha256", "pretrained weights") })
            if (expected[field] is not null && expected[field]!.GetValue<string>() != actual[field]?.GetValue<string>())
                found.Add($"{stage} differ ({field} {expected[field]} in the file, {actual[field]} here)");
        var want = expected["runs"]!.AsObject();
        var got = actual["runs"]!.AsObject();
        foreach (var (run, scores) in want)
        {
            if (got[run] is not JsonObject mine) { found.Add($"{run}: not run here"); continue; }
            foreach (var (metric, value) in scores!.AsObject())
                if (!JsonNode.DeepEquals(value, mine[metric]))
                    found.Add($"{run} {metric}: {value?.ToJsonString() ?? "null"} in the file, {mine[metric]?.ToJsonString() ?? "null"} here");
        }
        return found;
    }

    /// <summary>SHA-256 over the benchmark generator's files (relative path and bytes, in ordinal path order); the
    /// models cached next to them are left out.</summary>
    public static string BenchmarkDigest(string benchDir)
    {
        if (!Directory.Exists(benchDir)) throw new MedPeftException($"{benchDir}: no generated benchmark");
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var files = Directory.EnumerateFiles(benchDir, "*", SearchOption.AllDirectories)
            .Select(f => Path.GetRelativePath(benchDir, f).Replace('\\', '/'))
            .Where(f => !f.StartsWith("pretrained-") && !f.StartsWith("random-init-") && !f.EndsWith(".lock"))
            .Order(StringComparer.Ordinal);
        foreach (var rel in files)
        {
            sha.AppendData(System.Text.Encoding.UTF8.GetBytes(rel + "\n"));
            sha.AppendData(File.ReadAllBytes(Path.Combine(benchDir, rel)));
        }
        return Convert.ToHexStringLower(sha.GetHashAndReset());
    }

    /// <summary>SHA-256 of the pretrained model's weights file (the one pretrained model cached in the benchmark folder).</summary>
    public static string? PretrainedDigest(string benchDir)
    {
        var weights = Directory.Exists(benchDir)
            ? Directory.GetDirectories(benchDir, "pretrained-*").Select(d => Path.Combine(d, "model.safetensors")).Where(File.Exists).Order(StringComparer.Ordinal).ToList()
            : [];
        if (weights.Count != 1) return null;
        using var stream = File.OpenRead(weights[0]);
        return Convert.ToHexStringLower(SHA256.HashData(stream));
    }
}
