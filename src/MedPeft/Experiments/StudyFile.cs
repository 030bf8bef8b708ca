using System.Globalization;
using MedPeft.Data;
using MedPeft.Models;
using MedPeft.Tuning;
using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace MedPeft.Experiments;

/// <summary>Reads a study file (YAML, or JSON — a JSON document is valid YAML) into a <see cref="StudySpec"/>. Walks
/// the YAML node tree by hand rather than deserializing into classes so every error names the file, the line and the
/// field path (<c>study.yaml:12: strategies[2].options.r: expected an integer</c>). docs/study-files.md documents
/// the format.</summary>
public static class StudyFile
{
    static readonly string[] TopLevel = ["name", "models", "tasks", "datasets", "strategies", "learning_rate", "epochs", "max_steps", "batch_size", "seeds", "validation_limit", "test_limit", "zero_shot", "lr_sweep_steps"];

    public static StudySpec Load(string path)
    {
        if (!File.Exists(path)) throw new MedPeftException($"{path}: study file not found");
        string text = File.ReadAllText(path);
        return Parse(text, path);
    }

    public static StudySpec Parse(string text, string file)
    {
        var yaml = new YamlStream();
        try { yaml.Load(new StringReader(text)); }
        catch (YamlException e) { throw new MedPeftException($"{file}:{e.Start.Line}: not valid YAML/JSON: {e.InnerException?.Message ?? e.Message}"); }
        if (yaml.Documents.Count == 0 || yaml.Documents[0].RootNode is not YamlMappingNode root)
            throw new MedPeftException($"{file}: expected a mapping at the top (name:, models:, datasets:, strategies:, …)");
        var r = new Reader(file);
        r.NoUnknown(root, "", TopLevel);

        var name = r.Str(root, "name", "") ?? System.IO.Path.GetFileNameWithoutExtension(file);
        var tasks = r.Opt(root, "tasks") is { } tn ? r.Seq(tn, "tasks").Select((n, i) => r.Scalar(n, $"tasks[{i}]")).ToList() : null;
        if (tasks is not null)
            for (int i = 0; i < tasks.Count; i++)
                if (!StudyTasks.Known.Contains(tasks[i]))
                    throw r.Error(r.Seq(root.Children["tasks"], "tasks")[i], $"tasks[{i}]", $"unknown task \"{tasks[i]}\" (known: {string.Join(", ", StudyTasks.Known)})");

        var models = r.Seq(r.Req(root, "models", ""), "models").Select((n, i) => Model(r, n, $"models[{i}]")).ToList();
        if (models.Count == 0) throw r.Error(root.Children["models"], "models", "at least one model is needed");
        var datasets = r.Seq(r.Req(root, "datasets", ""), "datasets").Select((n, i) => Dataset(r, n, $"datasets[{i}]")).ToList();
        if (tasks is not null) datasets = datasets.Where(d => tasks.Contains(d.Task)).ToList();
        if (datasets.Count == 0) throw r.Error(root.Children["datasets"], "datasets", "no dataset left for the study's tasks");

        double? globalLr = r.Opt(root, "learning_rate") is { } lrn ? Lr(r, lrn, "learning_rate") : null;
        // "all" expands to every registered tuning method (registry-driven: methods added later join automatically).
        var strategies = r.Seq(r.Req(root, "strategies", ""), "strategies").SelectMany((n, i) => n is YamlScalarNode { Value: "all" }
            ? TuningMethods.All.Keys.Select(k => new StudyStrategy(k, k, new Dictionary<string, string>(), [globalLr]))
            : [Strategy(r, n, $"strategies[{i}]", globalLr)]).ToList();
        bool zeroShot = r.Opt(root, "zero_shot") is { } zs && r.Bool(zs, "zero_shot");
        if (zeroShot) strategies.Insert(0, new StudyStrategy("zero-shot", StudyStrategy.ZeroShot, new Dictionary<string, string>(), [null]));
        if (strategies.Count == 0) throw r.Error(root.Children["strategies"], "strategies", "at least one strategy is needed");
        var dup = strategies.GroupBy(s => s.Label).FirstOrDefault(g => g.Count() > 1);
        if (dup is not null) throw new MedPeftException($"{file}: strategies: label \"{dup.Key}\" appears twice (give one a `label:`)");

        var training = new StudyTraining
        {
            Epochs = r.Int(root, "epochs", 5, min: 1),
            MaxSteps = r.Opt(root, "max_steps") is { } ms ? r.Int(ms, "max_steps", min: 1) : null,
            BatchSize = r.Int(root, "batch_size", 32, min: 1),
            ValidationLimit = r.Int(root, "validation_limit", 0, min: 0),
            TestLimit = r.Int(root, "test_limit", 0, min: 0),
            LrSweepSteps = r.Int(root, "lr_sweep_steps", LrSweep.DefaultSteps, min: 1),
            Seeds = r.Opt(root, "seeds") is { } sn
                ? (sn is YamlSequenceNode ? r.Seq(sn, "seeds").Select((x, i) => r.Long(x, $"seeds[{i}]")).ToList() : [r.Long(sn, "seeds")])
                : [42],
        };
        if (training.Seeds.Count == 0) throw r.Error(root.Children["seeds"], "seeds", "at least one seed is needed");
        return new StudySpec(name, models, datasets, strategies, training, file);
    }

    static StudyModel Model(Reader r, YamlNode n, string field)
    {
        if (n is YamlScalarNode s)
        {
            var v = r.Scalar(s, field);
            return IsPresetName(v) ? new StudyModel(v, v, null) : new StudyModel(System.IO.Path.GetFileName(v.TrimEnd('/')), null, v);
        }
        var m = r.Map(n, field);
        r.NoUnknown(m, field, ["name", "preset", "path", "adapter", "dtype", "gradient_checkpointing"]);
        var preset = r.Str(m, "preset", field);
        var path = r.Str(m, "path", field);
        var adapter = r.Str(m, "adapter", field);
        if (adapter is not null && path is null) throw r.Error(m.Children["adapter"], field + ".adapter", "an adapter needs the base checkpoint folder in `path:`");
        if (preset is null && path is null) throw r.Error(n, field, "needs `preset:` (one of " + string.Join(", ", PresetNames) + ") or `path:` (a checkpoint folder)");
        if (preset is not null && !IsPresetName(preset)) throw r.Error(m.Children["preset"], field + ".preset", $"unknown preset \"{preset}\" (known: {string.Join(", ", PresetNames)})");
        var dtype = r.Str(m, "dtype", field) ?? "auto";
        if (!Precision.Names.Contains(dtype) && dtype is not ("bfloat16" or "float16" or "float32"))
            throw r.Error(m.Children["dtype"], field + ".dtype", $"\"{dtype}\" is not one of {string.Join(", ", Precision.Names)}");
        bool checkpointing = r.Opt(m, "gradient_checkpointing") is { } gc && r.Bool(gc, field + ".gradient_checkpointing");
        if ((dtype != "auto" || checkpointing) && path is null)
            throw r.Error(n, field, "dtype / gradient_checkpointing apply to checkpoint folders (`path:`); the embedded model trains in fp32");
        return new StudyModel(r.Str(m, "name", field) ?? preset ?? System.IO.Path.GetFileName(path!.TrimEnd('/')), preset, path)
            { Adapter = adapter, DType = dtype, GradientCheckpointing = checkpointing };
    }

    static IEnumerable<string> PresetNames => Presets.Names.Append(StudyModel.Embedded).Append(StudyModel.EmbeddedRandom);
    static bool IsPresetName(string v) => PresetNames.Contains(v);

    static StudyDataset Dataset(Reader r, YamlNode n, string field)
    {
        var m = r.Map(n, field);
        r.NoUnknown(m, field, ["name", "task", "format", "dir", "size", "train", "validation", "test", "extra_tests"]);
        var format = r.Str(m, "format", field) ?? throw r.Error(n, field, $"needs `format:` ({StudyDataset.EmbeddedFormat}, {string.Join(", ", DatasetFormats.Names)})");
        string task;
        if (format == StudyDataset.EmbeddedFormat)
        {
            var size = r.Str(m, "size", field) ?? "quick";
            if (size is not ("quick" or "default")) throw r.Error(m.Children["size"], field + ".size", "expected quick or default");
            task = r.Str(m, "task", field) ?? "vqa";
            if (!StudyTasks.Known.Contains(task)) throw r.Error(m.Children["task"], field + ".task", $"unknown task \"{task}\" (known: {string.Join(", ", StudyTasks.Known)})");
            // The built-in grid's names: embedded-quick (Med-VQA) and embedded-quick-report.
            return new StudyDataset(r.Str(m, "name", field) ?? (task == "vqa" ? $"embedded-{size}" : $"embedded-{size}-{task}"), task, format, size, Splits.Train, Splits.Validation, Splits.Test, []);
        }
        DatasetFormatInfo info;
        try { info = DatasetFormats.Get(format); }
        catch (MedPeftException e) { throw r.Error(m.Children["format"], field + ".format", e.Message); }
        task = r.Str(m, "task", field) ?? (info.Task == DatasetTask.Vqa ? "vqa" : "report");
        if (!StudyTasks.Known.Contains(task)) throw r.Error(n, field + ".task", $"unknown task \"{task}\" (known: {string.Join(", ", StudyTasks.Known)})");
        var dir = r.Str(m, "dir", field) ?? throw r.Error(n, field, "needs `dir:` (the dataset folder)");
        var extra = r.Opt(m, "extra_tests") is { } en
            ? r.Seq(en, field + ".extra_tests").Select((x, i) =>
            {
                var f = $"{field}.extra_tests[{i}]";
                var em = r.Map(x, f);
                r.NoUnknown(em, f, ["name", "format", "dir", "split"]);
                var ef = r.Str(em, "format", f) ?? throw r.Error(x, f, "needs `format:`");
                try { DatasetFormats.Get(ef); } catch (MedPeftException e) { throw r.Error(em.Children["format"], f + ".format", e.Message); }
                return new StudyTestSet(r.Str(em, "name", f) ?? ef, DatasetFormats.Get(ef).Name, r.Str(em, "dir", f) ?? throw r.Error(x, f, "needs `dir:`"), r.Str(em, "split", f) ?? Splits.Test);
            }).ToList()
            : [];
        return new StudyDataset(r.Str(m, "name", field) ?? info.Name, task, info.Name, dir,
            r.Str(m, "train", field) ?? Splits.Train, r.Str(m, "validation", field) ?? Splits.Validation, r.Str(m, "test", field) ?? Splits.Test, extra);
    }

    static StudyStrategy Strategy(Reader r, YamlNode n, string field, double? globalLr)
    {
        string spec; string? label = null; var options = new Dictionary<string, string>(); IReadOnlyList<double?> lrs = [globalLr];
        if (n is YamlScalarNode) spec = r.Scalar(n, field);
        else
        {
            var m = r.Map(n, field);
            r.NoUnknown(m, field, ["spec", "label", "options", "learning_rate"]);
            spec = r.Str(m, "spec", field) ?? throw r.Error(n, field, "needs `spec:` (e.g. ln, lora, ffn@vision+ln@text)");
            label = r.Str(m, "label", field);
            if (r.Opt(m, "options") is { } on)
            {
                var om = r.Map(on, field + ".options");
                var methods = MethodOptions.MethodsOf(spec);
                var allowed = methods.SelectMany(x => MethodOptions.Known.TryGetValue(x, out var o) ? o.Select(y => y.Key) : []).Distinct().ToArray();
                foreach (var (k, v) in om.Children)
                {
                    var key = r.Scalar(k, field + ".options");
                    if (!allowed.Contains(key))
                        throw r.Error(k, $"{field}.options.{key}", allowed.Length == 0 ? $"\"{spec}\" takes no options" : $"unknown option (known for {spec}: {string.Join(", ", allowed)})");
                    string value = v is YamlSequenceNode sq ? string.Join(",", sq.Children.Select((x, i) => r.Scalar(x, $"{field}.options.{key}[{i}]"))) : r.Scalar(v, $"{field}.options.{key}");
                    var vf = $"{field}.options.{key}";
                    var kinds = MethodOptions.Owners(key, methods).Select(o => MethodOptions.Known[o].First(x => x.Key == key).Kind).Distinct().ToList();
                    foreach (var kind in kinds)
                        switch (kind)
                        {
                            case MethodOptionKind.Integer: r.Long(v, vf); break;
                            case MethodOptionKind.Number: r.Double(v, vf); break;
                            case MethodOptionKind.Boolean: r.Bool(v, vf); value = value.ToLowerInvariant(); break;
                        }
                    options[key] = value;
                }
                // Value checks beyond the type (ranges, MLP/LSTM, lora+ia3 "targets") by the builder the CLI uses.
                try { MethodOptions.Parse(options.Select(o => ((string?)null, o.Key, o.Value)), methods, $"\"{spec}\""); }
                catch (MedPeftException e) { throw r.Error(on, field + ".options", e.Message); }
            }
            if (r.Opt(m, "learning_rate") is { } ln)
                lrs = ln is YamlSequenceNode ls ? ls.Children.Select((x, i) => Lr(r, x, $"{field}.learning_rate[{i}]")).ToList() : [Lr(r, ln, field + ".learning_rate")];
        }
        if (spec != StudyStrategy.ZeroShot)
        {
            // Towers differ by family (text/vision for BLIP, llm/vision/projector for LLaVA): valid for either is enough here;
            // the run applies it to its model's layout.
            try { TuningStrategy.Parse(spec, TowerLayout.Blip); }
            catch (MedPeftException e)
            {
                try { TuningStrategy.Parse(spec, TowerLayout.Llava); }
                catch (MedPeftException) { throw r.Error(n, field, e.Message); }
            }
        }
        label ??= options.Count == 0 ? spec : $"{spec} ({string.Join(", ", options.Select(o => $"{o.Key} {o.Value}"))})";
        return new StudyStrategy(label, spec, options, lrs);
    }

    /// <summary>"auto" = LR range test (NaN), "default" = the strategy's default (null), or a positive number.</summary>
    static double? Lr(Reader r, YamlNode n, string field)
    {
        var s = r.Scalar(n, field);
        if (s == "auto") return double.NaN;
        if (s == "default") return null;
        var v = r.Double(n, field);
        if (!(v > 0)) throw r.Error(n, field, "a learning rate must be positive (or \"auto\" / \"default\")");
        return v;
    }

    public static double Number(string s) => double.Parse(s, NumberStyles.Float, CultureInfo.InvariantCulture);

    /// <summary>Typed access to YAML nodes; every failure is a one-line error naming file, line and field.</summary>
    sealed class Reader(string file)
    {
        public MedPeftException Error(YamlNode n, string field, string message) =>
            new($"{file}:{n.Start.Line}: {(field.Length == 0 ? "" : field + ": ")}{message}");

        public YamlNode? Opt(YamlMappingNode m, string key) => m.Children.TryGetValue(new YamlScalarNode(key), out var v) ? v : null;
        public YamlNode Req(YamlMappingNode m, string key, string parent) =>
            Opt(m, key) ?? throw Error(m, parent, $"missing required field `{key}`");

        public YamlMappingNode Map(YamlNode n, string field) => n as YamlMappingNode ?? throw Error(n, field, "expected a mapping (key: value)");
        public IReadOnlyList<YamlNode> Seq(YamlNode n, string field) => (n as YamlSequenceNode)?.Children.ToList() ?? throw Error(n, field, "expected a list");
        public string Scalar(YamlNode n, string field) => (n as YamlScalarNode)?.Value ?? throw Error(n, field, "expected a value");
        public string? Str(YamlMappingNode m, string key, string parent) =>
            Opt(m, key) is { } n ? Scalar(n, parent.Length == 0 ? key : $"{parent}.{key}") : null;

        public void NoUnknown(YamlMappingNode m, string field, string[] known)
        {
            foreach (var k in m.Children.Keys)
            {
                var key = (k as YamlScalarNode)?.Value ?? "";
                if (!known.Contains(key))
                    throw Error(k, field.Length == 0 ? key : $"{field}.{key}", $"unknown field (expected one of: {string.Join(", ", known)})");
            }
        }

        public long Long(YamlNode n, string field) =>
            long.TryParse(Scalar(n, field), NumberStyles.Integer, CultureInfo.InvariantCulture, out var v) ? v : throw Error(n, field, $"expected an integer, got \"{Scalar(n, field)}\"");
        public double Double(YamlNode n, string field) =>
            double.TryParse(Scalar(n, field), NumberStyles.Float, CultureInfo.InvariantCulture, out var v) && double.IsFinite(v) ? v : throw Error(n, field, $"expected a number, got \"{Scalar(n, field)}\"");
        public bool Bool(YamlNode n, string field) =>
            bool.TryParse(Scalar(n, field), out var v) ? v : throw Error(n, field, $"expected true or false, got \"{Scalar(n, field)}\"");

        public int Int(YamlNode n, string field, int min)
        {
            var v = Long(n, field);
            return v < min || v > int.MaxValue ? throw Error(n, field, $"must be ≥ {min}") : (int)v;
        }
        public int Int(YamlMappingNode m, string key, int fallback, int min) => Opt(m, key) is { } n ? Int(n, key, min) : fallback;
    }
}
