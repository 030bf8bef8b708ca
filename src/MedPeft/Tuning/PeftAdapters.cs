using System.Globalization;
using System.Text;
using System.Text.Json;
using MedPeft.Models;
using MedPeft.Models.Llava;
using TorchSharp;
using static TorchSharp.torch;

namespace MedPeft.Tuning;

/// <summary>What an adapter_config.json says (the fields MedPeft acts on).</summary>
public sealed record PeftAdapterConfig(string PeftType, string? TaskType, LoraConfig? Lora, IReadOnlyList<string>? LnTargets)
{
    public Ia3Config? Ia3 { get; init; }
    public PrefixTuningConfig? Prefix { get; init; }
    public PromptTuningConfig? Prompt { get; init; }
    /// <summary>P_TUNING (PEFT's PromptEncoderConfig).</summary>
    public PromptEncoderConfig? PTuning { get; init; }
    public bool IsPromptLearning => Prefix is not null || Prompt is not null || PTuning is not null;
    /// <summary>Prompt learning: the declared num_layers / token_dim (checked against the model) and MedPeft's
    /// "medpeft_towers" (BLIP only; absent = the layout's language towers).</summary>
    public int? NumLayers { get; init; }
    public int? TokenDim { get; init; }
    public IReadOnlyList<string>? Towers { get; init; }
}

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
                    TargetModules = list ?? [], TargetRegex = regex, UseRslora = Bool("use_rslora"), UseDora = Bool("use_dora"), Bias = bias,
                }.Validate(path);
                return new PeftAdapterConfig(type, task, lora, null);
            }
            case "LN_TUNING":
            {
                var (list, regex) = Targets();
                if (regex is not null) throw new MedPeftException($"{path}: LN_TUNING with a regex target_modules is not supported (give a list)");
                return new PeftAdapterConfig(type, task, null, list);
            }
            case "IA3":
            {
                Unsupported(Bool("fan_in_fan_out"), "fan_in_fan_out", "true (Conv1D layers)");
                var (list, regex) = Targets();
                var ffEl = Get("feedforward_modules");
                List<string>? ffList = null; string? ffRegex = null;
                if (ffEl is { } f)
                {
                    if (f.ValueKind == JsonValueKind.String) ffRegex = f.GetString();
                    else if (f.ValueKind == JsonValueKind.Array && f.EnumerateArray().All(e => e.ValueKind == JsonValueKind.String)) ffList = f.EnumerateArray().Select(e => e.GetString()!).ToList();
                    else throw new MedPeftException($"{path}: field \"feedforward_modules\" must be a string or a list of strings");
                }
                var ia3 = new Ia3Config
                {
                    TargetModules = list ?? [], TargetRegex = regex, FeedforwardModules = ffList ?? [], FeedforwardRegex = ffRegex,
                    InitIa3Weights = Get("init_ia3_weights") is null || Bool("init_ia3_weights"),
                }.Validate(path);
                return new PeftAdapterConfig(type, task, null, null) { Ia3 = ia3 };
            }
            case "PREFIX_TUNING":
            case "PROMPT_TUNING":
            case "P_TUNING":
            {
                int Int(string k, bool required)
                {
                    if (Get(k) is not { } v) return required ? throw new MedPeftException($"{path}: field \"{k}\" is missing") : 0;
                    if (v.ValueKind != JsonValueKind.Number || !v.TryGetInt32(out var i) || i <= 0) throw new MedPeftException($"{path}: field \"{k}\" must be a positive integer");
                    return i;
                }
                var n = Int("num_virtual_tokens", true);
                var sub = Get("num_transformer_submodules") is null ? 1 : Int("num_transformer_submodules", false);
                Unsupported(sub != 1, "num_transformer_submodules", $"{sub} (encoder-decoder prompts)");
                List<string>? towers = null;
                if (Get("medpeft_towers") is { } tw)
                {
                    if (tw.ValueKind != JsonValueKind.Array || !tw.EnumerateArray().All(e => e.ValueKind == JsonValueKind.String))
                        throw new MedPeftException($"{path}: field \"medpeft_towers\" must be a list of strings");
                    towers = tw.EnumerateArray().Select(e => e.GetString()!).ToList();
                }
                var common = new PeftAdapterConfig(type, task, null, null)
                {
                    NumLayers = Get("num_layers") is null ? null : Int("num_layers", false),
                    TokenDim = Get("token_dim") is null ? null : Int("token_dim", false), Towers = towers,
                };
                if (type == "PREFIX_TUNING")
                    return common with
                    {
                        Prefix = new PrefixTuningConfig
                        {
                            NumVirtualTokens = n, PrefixProjection = Bool("prefix_projection"),
                            EncoderHiddenSize = Get("encoder_hidden_size") is null ? 0 : Int("encoder_hidden_size", false),
                        },
                    };
                if (type == "P_TUNING")
                {
                    var dropout = Num("encoder_dropout", 0);
                    var layersEl = Get("encoder_num_layers");
                    var pTuning = new PromptEncoderConfig
                    {
                        NumVirtualTokens = n, EncoderReparameterizationType = Str("encoder_reparameterization_type") ?? "MLP",
                        EncoderHiddenSize = Get("encoder_hidden_size") is null ? null : Int("encoder_hidden_size", false),
                        EncoderNumLayers = layersEl is null ? 2 : Int("encoder_num_layers", false), EncoderDropout = dropout,
                    };
                    try { pTuning.Validate(path, training: false); }
                    catch (MedPeftException e) { throw new MedPeftException(e.Message.Replace($"{path}: ", $"{path}: field ")); }
                    return common with { PTuning = pTuning };
                }
                var init = Str("prompt_tuning_init") ?? "RANDOM";
                if (init is not ("RANDOM" or "TEXT")) throw new MedPeftException($"{path}: field \"prompt_tuning_init\" must be RANDOM or TEXT (got \"{init}\")");
                return common with { Prompt = new PromptTuningConfig { NumVirtualTokens = n, PromptTuningInit = init, PromptTuningInitText = Str("prompt_tuning_init_text") } };
            }
            default:
                throw new MedPeftException($"{path}: peft_type \"{type}\" is not supported (LORA, LN_TUNING, IA3, PREFIX_TUNING, PROMPT_TUNING, P_TUNING)");
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
            ["task_type"] = taskType is null ? "null" : JStr(taskType), ["use_dora"] = c.UseDora ? "true" : "false", ["use_rslora"] = c.UseRslora ? "true" : "false",
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

    /// <summary>adapter_config.json as PEFT 0.11's IA3Config.save_pretrained writes it.</summary>
    public static string Ia3ConfigJson(Ia3Config c, string? taskType = "CAUSAL_LM", string baseModel = "")
    {
        var f = new SortedDictionary<string, string>(StringComparer.Ordinal)
        {
            ["auto_mapping"] = "null", ["base_model_name_or_path"] = JStr(baseModel), ["fan_in_fan_out"] = "false",
            ["feedforward_modules"] = c.FeedforwardRegex is not null ? JStr(c.FeedforwardRegex) : JList(c.FeedforwardModules),
            ["inference_mode"] = "true", ["init_ia3_weights"] = c.InitIa3Weights ? "true" : "false", ["modules_to_save"] = "null",
            ["peft_type"] = JStr("IA3"), ["revision"] = "null",
            ["target_modules"] = c.TargetRegex is not null ? JStr(c.TargetRegex) : JList(c.TargetModules),
            ["task_type"] = taskType is null ? "null" : JStr(taskType),
        };
        return JObject(f);
    }

    /// <summary>adapter_config.json of a prompt-learning method as PEFT 0.11 writes it (PrefixTuningConfig /
    /// PromptTuningConfig: the PromptLearningConfig fields plus the method's own). <paramref name="towers"/> is
    /// MedPeft's "medpeft_towers" (null = not written: the layout's language tower, LLaVA's llm).</summary>
    public static string PromptLearningConfigJson(string peftType, int numVirtualTokens, int tokenDim, int numLayers, int numHeads,
        PrefixTuningConfig? prefix, PromptTuningConfig? prompt, IReadOnlyList<string>? towers, string? taskType = "CAUSAL_LM", string baseModel = "",
        PromptEncoderConfig? pTuning = null)
    {
        var f = new SortedDictionary<string, string>(StringComparer.Ordinal)
        {
            ["auto_mapping"] = "null", ["base_model_name_or_path"] = JStr(baseModel), ["inference_mode"] = "true",
            ["num_attention_heads"] = numHeads.ToString(CultureInfo.InvariantCulture), ["num_layers"] = numLayers.ToString(CultureInfo.InvariantCulture),
            ["num_transformer_submodules"] = "1", ["num_virtual_tokens"] = numVirtualTokens.ToString(CultureInfo.InvariantCulture),
            ["peft_type"] = JStr(peftType), ["revision"] = "null", ["task_type"] = taskType is null ? "null" : JStr(taskType),
            ["token_dim"] = tokenDim.ToString(CultureInfo.InvariantCulture),
        };
        if (prefix is not null)
        {
            // Without the MLP the width is unused; PEFT still writes it, filled with token_dim by _prepare_prompt_learning_config.
            f["encoder_hidden_size"] = (prefix.PrefixProjection ? prefix.EncoderHiddenSize : tokenDim).ToString(CultureInfo.InvariantCulture);
            f["prefix_projection"] = prefix.PrefixProjection ? "true" : "false";
        }
        if (prompt is not null)
        {
            f["prompt_tuning_init"] = JStr(prompt.PromptTuningInit);
            f["prompt_tuning_init_text"] = prompt.PromptTuningInitText is null ? "null" : JStr(prompt.PromptTuningInitText);
            f["tokenizer_kwargs"] = "null";
            f["tokenizer_name_or_path"] = "null";
        }
        if (pTuning is not null)
        {
            // PEFT writes the config after _prepare_prompt_learning_config filled encoder_hidden_size (null → token_dim).
            f["encoder_dropout"] = JNum(pTuning.EncoderDropout, intIfIntegral: false);
            f["encoder_hidden_size"] = pTuning.HiddenSize(tokenDim).ToString(CultureInfo.InvariantCulture);
            f["encoder_num_layers"] = pTuning.EncoderNumLayers.ToString(CultureInfo.InvariantCulture);
            f["encoder_reparameterization_type"] = JStr(pTuning.EncoderReparameterizationType);
        }
        if (towers is not null) f["medpeft_towers"] = JList(towers);
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

    /// <summary>Loads a PEFT adapter folder into a base model through the registered method that reads its config
    /// (<see cref="TuningMethods.LoadAdapter"/>): LORA adds LoRA with the config's targets (whole model, as PEFT), IA3
    /// its vectors, LN_TUNING overwrites the targeted norms, prompt learning adds the prompt. The key sets must fit
    /// exactly (one-line error naming missing / unexpected / shape-mismatched keys). With <paramref name="trainable"/>
    /// the adapter tensors get requires_grad (PEFT's is_trainable).</summary>
    public static PeftAdapterConfig Load(nn.Module model, string adapterDir, bool trainable = false) =>
        TuningMethods.LoadAdapter(model, adapterDir, trainable).Config;

    /// <summary>Checks that the adapter file fits <paramref name="targets"/> exactly, then copies its tensors in.</summary>
    public static void CopyInto(IReadOnlyDictionary<string, Tensor> targets, IReadOnlyDictionary<string, Tensor> state, string adapterDir)
    {
        CheckFit(targets, state, Path.Combine(adapterDir, WeightsFile));
        using var _ = torch.no_grad();
        foreach (var (k, t) in targets) t.copy_(state[k].to(t.dtype).to(t.device));
    }

    public static TowerLayout LayoutOf(nn.Module model) => model is LlavaForConditionalGeneration ? TowerLayout.Llava : TowerLayout.Blip;

    /// <summary>The towers a prompt-learning adapter applies to when its config names none.</summary>
    static List<string> DefaultPromptTowers(nn.Module model, TowerLayout layout, bool prefix, string source)
    {
        var all = layout.Towers.Keys.ToList();
        var names = model.named_modules().Select(x => x.name).ToHashSet();
        var towers = prefix ? PrefixTuning.ApplicableTowers(layout, all, source) : PromptTuning.DefaultTowers(model, layout, all, source);
        return towers.Where(t => names.Contains(layout.Towers[t].TrimEnd('.'))).ToList();
    }

    /// <summary>PEFT's set_peft_model_state_dict for prompt learning: "prompt_embeddings" is loaded into the
    /// prompt encoder's embedding, which for prefix tuning is built as in inference mode (no MLP: the file holds the
    /// MLP's output). Several towers (BLIP) share one tensor, concatenated along dim 1 in tower order.</summary>
    internal static void LoadPromptLearning(nn.Module model, PeftAdapterConfig config, IReadOnlyDictionary<string, Tensor> state, string adapterDir, bool trainable)
    {
        var source = Path.Combine(adapterDir, ConfigFile);
        var layout = LayoutOf(model);
        bool isPrefix = config.Prefix is not null;
        int n = config.Prefix?.NumVirtualTokens ?? config.Prompt?.NumVirtualTokens ?? config.PTuning!.NumVirtualTokens;
        var towers = config.Towers?.ToList() ?? DefaultPromptTowers(model, layout, isPrefix, source);
        foreach (var t in towers)
            if (!layout.Towers.ContainsKey(t)) throw new MedPeftException($"{source}: field \"medpeft_towers\" names unknown tower \"{t}\"");
        var weights = new List<Tensor>();
        int layers = 0, tokenDim = 0, hiddenSize = 0;
        foreach (var tower in towers)
        {
            var name = layout.Towers[tower].TrimEnd('.');
            var root = model.named_modules().FirstOrDefault(x => x.name == name).module
                ?? throw new MedPeftException($"{source}: the model has no tower {tower} (module \"{name}\")");
            if (isPrefix)
            {
                var pt = PrefixTuning.Attach(tower, name, root, n, projection: false, encoderHidden: 0, source);
                weights.Add(pt.Encoder.embedding.weight!);
                layers += pt.NumLayers; tokenDim = pt.TokenDim; hiddenSize = pt.HiddenSize;
            }
            else
            {
                var pt = PromptTuning.Attach(model, tower, root, n, source, config.PTuning, inference: true);
                weights.Add(pt.Embedding.weight!);
                tokenDim = (int)pt.TokenDim;
            }
        }
        if (config.NumLayers is int nl && isPrefix && nl != layers)
            throw new MedPeftException($"{source}: field \"num_layers\" is {nl} but the adapted towers [{string.Join(", ", towers)}] have {layers} layers");
        // GQA prefix: PEFT ≥ 0.12.0 writes token_dim = kv_heads × head_dim and also rescales a hidden-size token_dim.
        if (config.TokenDim is int td && td != tokenDim && !(isPrefix && td == hiddenSize))
            throw new MedPeftException(isPrefix && hiddenSize != tokenDim
                ? $"{source}: field \"token_dim\" is {td} but the model's key/value width is {tokenDim} (num_key_value_heads × head_dim, PEFT ≥ 0.12.0's token_dim for grouped-query attention) and its hidden size {hiddenSize}"
                : $"{source}: field \"token_dim\" is {td} but the model's hidden size is {tokenDim}");
        long width = weights.Sum(w => w.shape[1]);
        using var meta = torch.empty(n, width, device: torch.META);
        CheckFit(new Dictionary<string, Tensor> { ["prompt_embeddings"] = meta }, state, Path.Combine(adapterDir, WeightsFile));
        using (torch.no_grad())
        {
            long at = 0;
            var all = state["prompt_embeddings"];
            foreach (var w in weights) { w.copy_(all[.., (int)at..(int)(at + w.shape[1])].to(w.dtype).to(w.device)); at += w.shape[1]; }
        }
        foreach (var w in weights) w.requires_grad = trainable;
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

    /// <summary>Writes the model's (IA)³ vectors (PEFT keys base_model.model.&lt;module&gt;.ia3_l, PEFT shapes) and config.</summary>
    public static void SaveIa3(nn.Module model, string dir, Ia3Config config, string? taskType = "CAUSAL_LM")
    {
        var tensors = Ia3.AdapterTensors(model);
        if (tensors.Count == 0) throw new MedPeftException($"{dir}: the model has no IA3 layers to save");
        Directory.CreateDirectory(dir);
        Checkpoint.SaveSafetensors(tensors.Select(kv => (kv.Key, kv.Value.contiguous())), Path.Combine(dir, WeightsFile));
        WriteText(Path.Combine(dir, ConfigFile), Ia3ConfigJson(config, taskType));
    }

    /// <summary>Writes a prefix-tuning / P-tuning v2 (PREFIX_TUNING), prompt-tuning (PROMPT_TUNING) or P-tuning v1
    /// (P_TUNING) adapter as PEFT's save_pretrained does: one tensor "prompt_embeddings" = get_prompt_embedding_to_save
    /// (for prefix tuning with the MLP, the MLP's output [N, layers·2·hidden]; for P-tuning the prompt encoder's output
    /// [N, token_dim]; so the file loads without the encoder), config with inference_mode true. Returns the peft_type
    /// written. A prefix on a grouped-query-attention LLaMA is written as PEFT ≥ 0.12.0 writes it (token_dim =
    /// kv_heads × head_dim, num_attention_heads = num_key_value_heads; see PrefixTuning), which PEFT 0.11 cannot load.</summary>
    public static string SavePromptLearning(nn.Module model, string dir, PrefixTuningConfig? prefix, PromptTuningConfig? prompt, string? taskType = "CAUSAL_LM")
    {
        var layout = LayoutOf(model);
        var prefixTowers = PrefixTuning.TowersOf(model);
        var promptTowers = PromptTuning.TowersOf(model);
        Tensor embeddings;
        PromptEncoderConfig? pTuning = null;
        string type; int n, tokenDim, layers, heads;
        List<string> towers;
        using var scope = torch.NewDisposeScope();
        using (torch.no_grad())
        {
            if (prefixTowers.Count > 0)
            {
                type = "PREFIX_TUNING";
                var ordered = layout.Towers.Keys.SelectMany(t => prefixTowers.Where(p => p.Tower == t)).ToList();
                embeddings = torch.cat(ordered.Select(p => p.PromptEmbeddings().to(ScalarType.Float32)).ToList(), 1);
                n = ordered[0].NumVirtualTokens; tokenDim = ordered[0].TokenDim; layers = ordered.Sum(p => p.NumLayers);
                heads = ordered[0].KvHeads;   // = num_attention_heads unless GQA (PEFT ≥ 0.12.0 writes num_key_value_heads)
                towers = ordered.Select(p => p.Tower).ToList();
                prefix ??= new PrefixTuningConfig { NumVirtualTokens = n, PrefixProjection = ordered[0].Encoder.transform is not null };
            }
            else if (promptTowers.Count > 0)
            {
                var ordered = layout.Towers.Keys.SelectMany(t => promptTowers.Where(p => p.Tower == t)).ToList();
                pTuning = ordered[0].PTuning;
                type = pTuning is null ? "PROMPT_TUNING" : "P_TUNING";
                if (ordered.Any(p => (p.PTuning is null) != (pTuning is null)))
                    throw new MedPeftException($"{dir}: the towers mix prompt tuning and P-tuning; PEFT has one type per adapter");
                // P_TUNING: get_prompt_embedding_to_save = the encoder's output for the N tokens (the file loads without
                // it), taken in eval mode so an LSTM's dropout does not end up in the file.
                var modes = ordered.Select(p => p.Encoder.training).ToList();
                foreach (var p in ordered) p.Encoder.eval();
                embeddings = torch.cat(ordered.Select(p => p.Prompt().detach().to(ScalarType.Float32)).ToList(), 1);
                for (int i = 0; i < ordered.Count; i++) ordered[i].Encoder.train(modes[i]);
                n = (int)ordered[0].Length; tokenDim = (int)ordered[0].TokenDim;
                (layers, heads) = LayersAndHeads(ordered[0].Root);
                towers = ordered.Select(p => p.Tower).ToList();
                prompt ??= new PromptTuningConfig { NumVirtualTokens = n };
                prefix = null;
            }
            else throw new MedPeftException($"{dir}: the model has no prefix or prompt to save");
        }
        Directory.CreateDirectory(dir);
        Checkpoint.SaveSafetensors([("prompt_embeddings", embeddings.contiguous())], Path.Combine(dir, WeightsFile));
        var named = ReferenceEquals(layout, TowerLayout.Llava) && towers.SequenceEqual(["llm"]) ? null : towers;
        WriteText(Path.Combine(dir, ConfigFile), PromptLearningConfigJson(type, n, tokenDim, layers, heads, type == "PREFIX_TUNING" ? prefix : null,
            type == "PROMPT_TUNING" ? prompt : null, named, taskType, pTuning: pTuning));
        return type;
    }

    static (int Layers, int Heads) LayersAndHeads(nn.Module root) => root switch
    {
        Models.Llama.LlamaForCausalLM lm => (lm.model.Config.NumHiddenLayers, lm.model.Config.NumAttentionHeads),
        Models.Blip.BlipTextModel b => (b.encoder.layer.Count, b.encoder.layer[0].attention.self.GetHeads()),
        Models.Blip.BlipTextLMHeadModel d => (d.bert.encoder.layer.Count, d.bert.encoder.layer[0].attention.self.GetHeads()),
        _ => (0, 0),
    };

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
    /// a no-grad forward (<c>logits_merged</c>, <c>loss_merged</c>). Also IA3 (grads in PEFT's vector shapes) and
    /// prompt learning (grad.prompt_embeddings; no merged form, so expected files must not ask for merged values; a
    /// P_TUNING adapter runs as PEFT's inference form, so its gradient is that of the stored encoder output).
    /// Leaves the model merged (LoRA/IA3 removed, norms replaced); other parameters' requires_grad flags are restored.</summary>
    public static Dictionary<string, Tensor> LlavaAdapterTensors(LlavaForConditionalGeneration model, string adapterDir,
        Dictionary<string, Tensor> inputs, Dictionary<string, Tensor> expected)
    {
        var before = model.named_parameters().Select(p => (p.parameter, p.parameter.requires_grad)).ToList();
        foreach (var (p, _) in before) p.requires_grad = false;
        var (method, config) = TuningMethods.LoadAdapter(model, adapterDir, trainable: true);
        bool promptLearning = config.IsPromptLearning;
        // Adapter key → the trained tensors behind it and how their gradient is shown under that key.
        var adapter = new Dictionary<string, (List<Tensor> Params, Func<List<Tensor>, Tensor> Grad)>();
        Tensor GradOf(Tensor t) => t.grad is { } g ? g.detach().clone() : torch.zeros_like(t);
        if (config.Lora is not null)
            foreach (var (k, t) in Lora.AdapterTensors(model)) adapter[k] = ([t], ts => GradOf(ts[0]));
        else if (config.Ia3 is not null)
            foreach (var l in Ia3.LayersOf(model)) { var layer = l; adapter[Prefix + l.Name + ".ia3_l"] = ([l.Vector], ts => GradOf(ts[0]).view(layer.PeftShaped().shape)); }
        else if (promptLearning)
        {
            var ws = PrefixTuning.TowersOf(model).Select(t => (Tensor)t.Encoder.embedding.weight!)
                .Concat(PromptTuning.TowersOf(model).Select(t => (Tensor)t.Embedding.weight!)).ToList();
            adapter["prompt_embeddings"] = (ws, ts => torch.cat(ts.Select(GradOf).ToList(), 1));
        }
        else foreach (var (k, t) in LnTuningParameters(model, config.LnTargets!)) adapter[k] = ([t], ts => GradOf(ts[0]));
        foreach (var t in adapter.Values.SelectMany(a => a.Params)) { t.grad?.zero_(); t.requires_grad = true; }

        LlavaInput Input() => new(inputs["input_ids"], inputs["pixel_values"],
            inputs.GetValueOrDefault("attention_mask"), inputs.GetValueOrDefault("labels"));

        var result = new Dictionary<string, Tensor>();
        var o = model.forward(Input());
        result["logits_with_adapter"] = o.Logits.detach().clone();
        if (o.Loss is null) throw new MedPeftException("LlavaAdapterTensors: the inputs need labels for a loss");
        result["loss_with_adapter"] = o.Loss.detach().clone();
        o.Loss.backward();
        foreach (var key in expected.Keys.Where(k => k.StartsWith("grad.", StringComparison.Ordinal)))
        {
            var name = key["grad.".Length..];
            if (!adapter.TryGetValue(name, out var a))
                throw new MedPeftException($"LlavaAdapterTensors: expected {key} but the adapter has no tensor \"{name}\"");
            result[key] = a.Grad(a.Params);
        }

        if (promptLearning)
        {
            if (expected.ContainsKey("logits_merged") || expected.ContainsKey("loss_merged"))
                throw new MedPeftException($"{adapterDir}: {config.PeftType} adapters have no merged form (expected file asks for logits_merged)");
            foreach (var (p, rg) in before) p.requires_grad = rg;
            return result;
        }
        method.Finalize(model, FinalizeMode.Merge);
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
