using System.Globalization;
using System.Text;
using System.Text.Json;
using MedPeft.Models;
using MedPeft.Models.Llava;
using TorchSharp;
using static TorchSharp.torch;

namespace MedPeft.Tuning;

/// <summary>What an adapter_config.json says (the fields MedPeft acts on).</summary>
public sealed record PeftAdapterConfig(string PeftType, string? TaskType, LoraConfig? Lora, IReadOnlyList<string>? LnTargets);

/// <summary>Adapter folders in Hugging Face PEFT's (0.11) format: <c>adapter_config.json</c> +
/// <c>adapter_model.safetensors</c> with keys <c>base_model.model.&lt;module&gt;.lora_A.weight</c> / <c>.lora_B.weight</c>
/// (LORA) or <c>base_model.model.&lt;norm&gt;.ln_tuning_layers.weight</c> / <c>.bias</c> (LN_TUNING), the default adapter
/// (whose name PEFT leaves out of the keys).</summary>
public static class PeftAdapters
{
    public const string Prefix = "base_model.model.";
    public const string ConfigFile = "adapter_config.json";
    public const string WeightsFile = "adapter_model.safetensors";
    const string LnInfix = ".ln_tuning_layers.";

    // ---------------------------------------------------------------- config

    public static PeftAdapterConfig ReadConfig(string adapterDir)
    {
        var path = Path.Combine(adapterDir, ConfigFile);
        if (!File.Exists(path)) throw new MedPeftException($"{path}: adapter config not found");
        JsonElement root;
        try { root = JsonDocument.Parse(File.ReadAllText(path)).RootElement; }
        catch (JsonException e) { throw new MedPeftException($"{path}: invalid JSON: {e.Message}"); }
        if (root.ValueKind != JsonValueKind.Object) throw new MedPeftException($"{path}: not a JSON object");

        JsonElement? Get(string k) => root.TryGetProperty(k, out var v) && v.ValueKind != JsonValueKind.Null ? v : null;
        string? Str(string k) => Get(k) is { } v ? (v.ValueKind == JsonValueKind.String ? v.GetString() : throw new MedPeftException($"{path}: field \"{k}\" must be a string")) : null;
        double Num(string k, double d) => Get(k) is { } v ? (v.ValueKind == JsonValueKind.Number ? v.GetDouble() : throw new MedPeftException($"{path}: field \"{k}\" must be a number")) : d;
        bool Bool(string k) => Get(k) is { } v && (v.ValueKind is JsonValueKind.True or JsonValueKind.False ? v.GetBoolean() : throw new MedPeftException($"{path}: field \"{k}\" must be true/false"));
        void Unsupported(bool bad, string field, string why) { if (bad) throw new MedPeftException($"{path}: field \"{field}\" {why} is not supported by MedPeft"); }
        bool NonEmpty(string k) => Get(k) is { } v && !(v.ValueKind == JsonValueKind.Object && !v.EnumerateObject().Any()) && !(v.ValueKind == JsonValueKind.Array && v.GetArrayLength() == 0);

        (List<string>? list, string? regex) Targets()
        {
            var t = Get("target_modules") ?? throw new MedPeftException($"{path}: field \"target_modules\" is missing");
            if (t.ValueKind == JsonValueKind.String) return (null, t.GetString());
            if (t.ValueKind == JsonValueKind.Array && t.EnumerateArray().All(e => e.ValueKind == JsonValueKind.String))
                return (t.EnumerateArray().Select(e => e.GetString()!).ToList(), null);
            throw new MedPeftException($"{path}: field \"target_modules\" must be a string or a list of strings");
        }

        var type = Str("peft_type") ?? throw new MedPeftException($"{path}: field \"peft_type\" is missing");
        var task = Str("task_type");
        Unsupported(NonEmpty("modules_to_save"), "modules_to_save", "(extra fully trained modules)");
        switch (type)
        {
            case "LORA":
            {
                Unsupported(Bool("use_dora"), "use_dora", "true (DoRA)");
                Unsupported(Bool("fan_in_fan_out"), "fan_in_fan_out", "true (Conv1D layers)");
                Unsupported(NonEmpty("rank_pattern"), "rank_pattern", "(per-module ranks)");
                Unsupported(NonEmpty("alpha_pattern"), "alpha_pattern", "(per-module alphas)");
                Unsupported(NonEmpty("layers_to_transform"), "layers_to_transform", "(layer subsets)");
                Unsupported(NonEmpty("layer_replication"), "layer_replication", "");
                var bias = Str("bias") ?? "none";
                Unsupported(bias != "none", "bias", $"\"{bias}\"");
                var (list, regex) = Targets();
                var r = Num("r", 8);
                if (r != Math.Floor(r) || r <= 0) throw new MedPeftException($"{path}: field \"r\" must be a positive integer");
                var lora = new LoraConfig
                {
                    R = (int)r, LoraAlpha = Num("lora_alpha", 8), LoraDropout = Num("lora_dropout", 0),
                    TargetModules = list ?? [], TargetRegex = regex, UseRslora = Bool("use_rslora"), Bias = bias,
                }.Validate(path);
                return new PeftAdapterConfig(type, task, lora, null);
            }
            case "LN_TUNING":
            {
                var (list, regex) = Targets();
                if (regex is not null) throw new MedPeftException($"{path}: LN_TUNING with a regex target_modules is not supported (give a list)");
                return new PeftAdapterConfig(type, task, null, list);
            }
            default:
                throw new MedPeftException($"{path}: peft_type \"{type}\" is not supported (LORA, LN_TUNING)");
        }
    }

    /// <summary>adapter_config.json exactly as PEFT 0.11's LoraConfig.save_pretrained writes it (same field set, keys
    /// sorted, two-space indent).</summary>
    public static string LoraConfigJson(LoraConfig c, string? taskType = "CAUSAL_LM", string baseModel = "")
    {
        var f = new SortedDictionary<string, string>(StringComparer.Ordinal)
        {
            ["alpha_pattern"] = "{}", ["auto_mapping"] = "null", ["base_model_name_or_path"] = JStr(baseModel), ["bias"] = JStr(c.Bias),
            ["fan_in_fan_out"] = "false", ["inference_mode"] = "true", ["init_lora_weights"] = "true", ["layer_replication"] = "null",
            ["layers_pattern"] = "null", ["layers_to_transform"] = "null", ["loftq_config"] = "{}", ["lora_alpha"] = JNum(c.LoraAlpha, intIfIntegral: true),
            ["lora_dropout"] = JNum(c.LoraDropout, intIfIntegral: false), ["megatron_config"] = "null", ["megatron_core"] = JStr("megatron.core"),
            ["modules_to_save"] = "null", ["peft_type"] = JStr("LORA"), ["r"] = c.R.ToString(CultureInfo.InvariantCulture), ["rank_pattern"] = "{}",
            ["revision"] = "null", ["target_modules"] = c.TargetRegex is not null ? JStr(c.TargetRegex) : JList(c.TargetModules),
            ["task_type"] = taskType is null ? "null" : JStr(taskType), ["use_dora"] = "false", ["use_rslora"] = c.UseRslora ? "true" : "false",
        };
        return JObject(f);
    }

    /// <summary>adapter_config.json as PEFT 0.11's LNTuningConfig.save_pretrained writes it.</summary>
    public static string LnTuningConfigJson(IReadOnlyList<string> targetModules, string? taskType = "CAUSAL_LM", string baseModel = "")
    {
        var f = new SortedDictionary<string, string>(StringComparer.Ordinal)
        {
            ["auto_mapping"] = "null", ["base_model_name_or_path"] = JStr(baseModel), ["inference_mode"] = "true", ["modules_to_save"] = "null",
            ["peft_type"] = JStr("LN_TUNING"), ["revision"] = "null", ["target_modules"] = JList(targetModules),
            ["task_type"] = taskType is null ? "null" : JStr(taskType),
        };
        return JObject(f);
    }

    static string JStr(string s) => JsonSerializer.Serialize(s);
    static string JNum(double v, bool intIfIntegral) =>
        v == Math.Floor(v) && Math.Abs(v) < 1e15 ? (intIfIntegral ? ((long)v).ToString(CultureInfo.InvariantCulture) : ((long)v).ToString(CultureInfo.InvariantCulture) + ".0")
            : v.ToString("R", CultureInfo.InvariantCulture);
    static string JList(IEnumerable<string> items)
    {
        var l = items.ToList();
        return l.Count == 0 ? "[]" : "[\n" + string.Join(",\n", l.Select(s => "    " + JStr(s))) + "\n  ]";
    }
    static string JObject(SortedDictionary<string, string> f) =>
        "{\n" + string.Join(",\n", f.Select(kv => $"  {JStr(kv.Key)}: {kv.Value}")) + "\n}";

    // ---------------------------------------------------------------- LN tuning keys

    /// <summary>The norm modules an LN-tuning target list selects (PEFT suffix matching) and their PEFT keys →
    /// the model parameters they stand for.</summary>
    public static Dictionary<string, TorchSharp.Modules.Parameter> LnTuningParameters(nn.Module model, IReadOnlyList<string> targetModules)
    {
        var matcher = new LoraConfig { TargetModules = targetModules };
        var d = new Dictionary<string, TorchSharp.Modules.Parameter>();
        foreach (var (name, m) in model.named_modules())
        {
            if (name.Length == 0 || !matcher.Targets(name)) continue;
            foreach (var (pname, p) in m.named_parameters(recurse: false))
                d[Prefix + name + LnInfix + pname] = p;
        }
        return d;
    }

    // ---------------------------------------------------------------- load

    /// <summary>Loads a PEFT adapter folder into a base model: LORA adds LoRA with the config's targets (whole model,
    /// as PEFT) and loads the factors; LN_TUNING overwrites the targeted norms' parameters with the adapter's. The
    /// key sets must fit exactly (one-line error naming missing / unexpected / shape-mismatched keys). With
    /// <paramref name="trainable"/> the adapter tensors get requires_grad (PEFT's is_trainable).</summary>
    public static PeftAdapterConfig Load(nn.Module model, string adapterDir, bool trainable = false)
    {
        var config = ReadConfig(adapterDir);
        var weightsPath = Path.Combine(adapterDir, WeightsFile);
        var state = Checkpoint.ReadSafetensors(weightsPath);
        try
        {
            Dictionary<string, Tensor> targets;
            if (config.Lora is not null)
            {
                Lora.Apply(model, config.Lora, source: Path.Combine(adapterDir, ConfigFile));
                targets = Lora.AdapterTensors(model);
            }
            else targets = LnTuningParameters(model, config.LnTargets!).ToDictionary(kv => kv.Key, kv => (Tensor)kv.Value);
            CheckFit(targets, state, weightsPath);
            using (torch.no_grad())
                foreach (var (k, t) in targets) t.copy_(state[k].to(t.dtype).to(t.device));
            // LoRA factors train only when asked (PEFT's is_trainable); norms keep their flag unless asked to train.
            foreach (var t in targets.Values) if (trainable || config.Lora is not null) t.requires_grad = trainable;
            return config;
        }
        finally { foreach (var t in state.Values) t.Dispose(); }
    }

    /// <summary>Throws one line naming missing, unexpected and shape-mismatched adapter keys.</summary>
    public static void CheckFit(IReadOnlyDictionary<string, Tensor> model, IReadOnlyDictionary<string, Tensor> file, string source)
    {
        var missing = model.Keys.Where(k => !file.ContainsKey(k)).OrderBy(k => k, StringComparer.Ordinal).ToList();
        var unexpected = file.Keys.Where(k => !model.ContainsKey(k)).OrderBy(k => k, StringComparer.Ordinal).ToList();
        var mismatched = model.Where(kv => file.TryGetValue(kv.Key, out var f) && !f.shape.SequenceEqual(kv.Value.shape))
            .Select(kv => $"{kv.Key} [{string.Join(",", file[kv.Key].shape)}] vs model [{string.Join(",", kv.Value.shape)}]").ToList();
        var report = new LoadReport(missing, unexpected, mismatched);
        if (!report.Ok) throw new MedPeftException(report.Describe(source + " does not fit the model"));
    }

    // ---------------------------------------------------------------- save

    /// <summary>Writes the model's LoRA factors and the config as PEFT would (adapter_config.json +
    /// adapter_model.safetensors, keys base_model.model.&lt;module&gt;.lora_A.weight / lora_B.weight).</summary>
    public static void SaveLora(nn.Module model, string dir, LoraConfig config, string? taskType = "CAUSAL_LM")
    {
        var tensors = Lora.AdapterTensors(model);
        if (tensors.Count == 0) throw new MedPeftException($"{dir}: the model has no LoRA layers to save");
        Directory.CreateDirectory(dir);
        Checkpoint.SaveSafetensors(tensors.Select(kv => (kv.Key, kv.Value)), Path.Combine(dir, WeightsFile));
        WriteText(Path.Combine(dir, ConfigFile), LoraConfigJson(config, taskType));
    }

    /// <summary>Writes the targeted norms' parameters as a PEFT LN_TUNING adapter.</summary>
    public static void SaveLnTuning(nn.Module model, string dir, IReadOnlyList<string> targetModules, string? taskType = "CAUSAL_LM")
    {
        var ps = LnTuningParameters(model, targetModules);
        if (ps.Count == 0) throw new MedPeftException($"{dir}: LN-tuning targets [{string.Join(", ", targetModules)}] match no module");
        Directory.CreateDirectory(dir);
        Checkpoint.SaveSafetensors(ps.Select(kv => (kv.Key, (Tensor)kv.Value)), Path.Combine(dir, WeightsFile));
        WriteText(Path.Combine(dir, ConfigFile), LnTuningConfigJson(targetModules, taskType));
    }

    static void WriteText(string path, string text)
    {
        var tmp = path + $".tmp-{Environment.ProcessId}";
        File.WriteAllText(tmp, text, new UTF8Encoding(false));
        File.Move(tmp, path, overwrite: true);
    }

    // ---------------------------------------------------------------- parity

    /// <summary>The fixtures/hf/llava_lora and llava_ln_tuning quantities on a loaded base LLaVA: loads the adapter,
    /// runs forward + backward (<c>logits_with_adapter</c>, <c>loss_with_adapter</c>, <c>grad.&lt;adapter key&gt;</c> for
    /// every <c>grad.*</c> key of <paramref name="expected"/>, zeros where no gradient arrives), then merge_and_unload and
    /// a no-grad forward (<c>logits_merged</c>, <c>loss_merged</c>). Leaves the model merged (LoRA removed, norms
    /// replaced); other parameters' requires_grad flags are restored.</summary>
    public static Dictionary<string, Tensor> LlavaAdapterTensors(LlavaForConditionalGeneration model, string adapterDir,
        Dictionary<string, Tensor> inputs, Dictionary<string, Tensor> expected)
    {
        var before = model.named_parameters().Select(p => (p.parameter, p.parameter.requires_grad)).ToList();
        foreach (var (p, _) in before) p.requires_grad = false;
        var config = Load(model, adapterDir, trainable: true);
        var adapter = config.Lora is not null ? Lora.AdapterTensors(model)
            : LnTuningParameters(model, config.LnTargets!).ToDictionary(kv => kv.Key, kv => (Tensor)kv.Value);
        foreach (var t in adapter.Values) { t.grad?.zero_(); t.requires_grad = true; }

        LlavaInput Input() => new(inputs["input_ids"], inputs["pixel_values"],
            inputs.GetValueOrDefault("attention_mask"), inputs.GetValueOrDefault("labels"));

        var result = new Dictionary<string, Tensor>();
        long callsBefore = Lora.LayersOf(model).Sum(l => l.Calls);
        var o = model.forward(Input());
        if (config.Lora is not null && Lora.LayersOf(model).Sum(l => l.Calls) == callsBefore)
            throw new MedPeftException("LoRA: no adapted layer ran its hook; the model code must call its Linear layers with .call(x), not .forward(x)");
        result["logits_with_adapter"] = o.Logits.detach().clone();
        if (o.Loss is null) throw new MedPeftException("LlavaAdapterTensors: the inputs need labels for a loss");
        result["loss_with_adapter"] = o.Loss.detach().clone();
        o.Loss.backward();
        foreach (var key in expected.Keys.Where(k => k.StartsWith("grad.", StringComparison.Ordinal)))
        {
            var name = key["grad.".Length..];
            if (!adapter.TryGetValue(name, out var t))
                throw new MedPeftException($"LlavaAdapterTensors: expected {key} but the adapter has no tensor \"{name}\"");
            result[key] = t.grad is { } g ? g.detach().clone() : torch.zeros_like(t);
        }

        if (config.Lora is not null) Lora.MergeAndUnload(model);
        using (torch.no_grad())
        {
            var m = model.forward(Input());
            result["logits_merged"] = m.Logits.detach().clone();
            result["loss_merged"] = m.Loss!.detach().clone();
        }
        foreach (var (p, rg) in before) p.requires_grad = rg;
        return result;
    }
}
