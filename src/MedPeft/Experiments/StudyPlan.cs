using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace MedPeft.Experiments;

/// <summary>One run of a study: a model × dataset × strategy × learning rate × seed, with the shared training
/// settings. <see cref="Key"/> is its identity in the results store.</summary>
public sealed record StudyRun(int Index, StudyModel Model, StudyDataset Dataset, StudyStrategy Strategy, double? LearningRate, long Seed, StudyTraining Training)
{
    public bool LrAuto => LearningRate is double v && double.IsNaN(v);

    /// <summary>The table row's method name: the strategy label, plus the model when it is not the study's main one
    /// (the built-in grid's "full (random init)" already says so) and the learning rate when several are compared.</summary>
    public string Method { get; init; } = Strategy.Label;

    /// <summary>The canonical configuration: every field that changes the result, in a fixed order. Timing-only
    /// settings (threads, device) are not part of it.</summary>
    public JsonObject Config()
    {
        var config = new JsonObject
        {
        ["model"] = Model.IsEmbedded
            ? new JsonObject { ["name"] = Model.Name, ["preset"] = Model.Preset, ["pretrain_seed"] = Model.PretrainSeed }
            : new JsonObject { ["name"] = Model.Name, ["preset"] = Model.Preset, ["path"] = Model.Path },
        ["task"] = Dataset.Task,
        ["dataset"] = new JsonObject
        {
            ["name"] = Dataset.Name, ["format"] = Dataset.Format, ["dir"] = Dataset.Dir, ["train"] = Dataset.Train,
            ["validation"] = Dataset.Validation, ["test"] = Dataset.Test,
            ["extra_tests"] = new JsonArray(Dataset.ExtraTests.Select(t => (JsonNode)new JsonObject { ["name"] = t.Name, ["format"] = t.Format, ["dir"] = t.Dir, ["split"] = t.Split }).ToArray()),
        },
        ["strategy"] = Strategy.Spec,
        ["options"] = new JsonObject(Strategy.Options.OrderBy(o => o.Key, StringComparer.Ordinal).Select(o => KeyValuePair.Create(o.Key, (JsonNode?)o.Value))),
        ["learning_rate"] = LearningRate is double v ? (double.IsNaN(v) ? "auto" : JsonValue.Create(v)) : "default",
        ["epochs"] = Training.Epochs,
        ["max_steps"] = Training.MaxSteps,
        ["batch_size"] = Training.BatchSize,
        ["validation_limit"] = Training.ValidationLimit,
        ["test_limit"] = Training.TestLimit,
        ["seed"] = Seed,
        };
        if (LrAuto) config["lr_sweep_steps"] = Training.LrSweepSteps;   // only range-tested runs depend on it
        if (Model.Adapter is not null) config["model"]!["adapter"] = Model.Adapter;   // absent otherwise: older keys stay valid
        if (Model.DType != "auto") config["model"]!["dtype"] = Model.DType;
        if (Model.GradientCheckpointing) config["model"]!["gradient_checkpointing"] = true;
        if (Training.Reproducible) config["reproducible"] = true;   // likewise
        return config;
    }

    /// <summary>SHA-256 of the canonical configuration JSON (first 16 hex digits): the same run in another study file
    /// or process gets the same key, so restarts and concurrent workers agree on what is done.</summary>
    public string Key => KeyOf(Config());

    public static string KeyOf(JsonObject config) =>
        Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(config.ToJsonString(new JsonSerializerOptions { WriteIndented = false }))))[..16];
}

/// <summary>Expands a <see cref="StudySpec"/> into its runs in a fixed order (dataset, model, strategy, lr, seed),
/// so run index N means the same run to every process — the Slurm array uses it.</summary>
public static class StudyPlan
{
    public sealed record Expanded(IReadOnlyList<StudyRun> Runs, IReadOnlyList<string> Skipped);

    public static Expanded Expand(StudySpec spec)
    {
        var runs = new List<StudyRun>();
        var skipped = new List<string>();
        bool manyModels = spec.Models.Count > 1;
        foreach (var dataset in spec.Datasets)
        {
            if (!StudyTasks.IsAvailable(dataset.Task))
            {
                skipped.Add($"{dataset.Name}: task \"{dataset.Task}\" is not available in this build ({StudyTasks.WhyUnavailable(dataset.Task)}); its runs are skipped");
                continue;
            }
            var pairs = spec.Models.SelectMany(m => spec.Strategies.Select(s => (m, s, extra: false)))
                .Concat(spec.ExtraRuns.Select(x => (m: x.Model, s: x.Strategy, extra: true)));
            foreach (var (model, strategy, extra) in pairs)
            {
                var lrs = strategy.IsZeroShot ? [null] : strategy.LearningRates;
                foreach (var lr in lrs)
                    foreach (var seed in strategy.IsZeroShot ? spec.Training.Seeds.Take(1) : strategy.Seeds ?? spec.Training.Seeds)
                    {
                        var method = strategy.Label;
                        if (manyModels && !extra) method = $"{model.Name} · {method}";
                        if (lrs.Count > 1 && lr is double v) method += double.IsNaN(v) ? " lr auto" : $" lr {v:G3}";
                        runs.Add(new StudyRun(runs.Count, model, dataset, strategy, lr, seed, spec.Training) { Method = method });
                    }
            }
        }
        var dup = runs.GroupBy(r => r.Key).FirstOrDefault(g => g.Count() > 1);
        if (dup is not null) throw new MedPeftException($"{spec.Source}: runs {string.Join(" and ", dup.Select(r => r.Method))} have the same configuration");
        return new Expanded(runs, skipped);
    }
}
