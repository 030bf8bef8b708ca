using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using MedPeft.Models;
using MedPeft.Models.Llava;
using TorchSharp;
using static TorchSharp.torch;

namespace MedPeft.Tuning;

/// <summary>What an adapter_config.json says: the method's config record (<see cref="Config"/>), read generically by
/// <see cref="PeftConfigJson"/>, with typed views for the callers that act on one PEFT type.</summary>
public sealed record PeftAdapterConfig(PeftConfig Config)
{
    public string PeftType => Config.PeftType;
    public string? TaskType => Config.TaskType;
    public LoraConfig? Lora => Config as LoraConfig;
    public IReadOnlyList<string>? LnTargets => (Config as LnTuningConfig)?.TargetModules;
    public Ia3Config? Ia3 => Config as Ia3Config;
    public PrefixTuningConfig? Prefix => Config as PrefixTuningConfig;
    public PromptTuningConfig? Prompt => Config as PromptTuningConfig;
    /// <summary>P_TUNING (PEFT's PromptEncoderConfig).</summary>
    public PromptEncoderConfig? PTuning => Config as PromptEncoderConfig;
    public bool IsPromptLearning => Config is PromptLearningConfig;
    /// <summary>Prompt learning: the declared num_layers / token_dim (checked against the model) and MedPeft's
    /// "medpeft_towers" (BLIP only; absent = the layout's language towers).</summary>
    public int? NumLayers => (Config as PromptLearningConfig)?.NumLayers;
    public int? TokenDim => (Config as PromptLearningConfig)?.TokenDim;
    public IReadOnlyList<string>? Towers => (Config as PromptLearningConfig)?.MedpeftTowers;
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

    /// <summary>Reads adapter_config.json: its peft_type picks the config record (through the registry's methods), which
    /// System.Text.Json fills by PEFT's field names; fields MedPeft cannot honour are refused in one line.</summary>
    public static PeftAdapterConfig ReadConfig(string adapterDir)
    {
        var path = Path.Combine(adapterDir, ConfigFile);
        if (!File.Exists(path)) throw new MedPeftException($"{path}: adapter config not found");
        JsonNode? root;
        try { root = JsonNode.Parse(File.ReadAllText(path)); }
        catch (JsonException e) { throw new MedPeftException($"{path}: invalid JSON: {e.Message}"); }
        if (root is not JsonObject json) throw new MedPeftException($"{path}: not a JSON object");
        var type = json["peft_type"] switch
        {
            null => throw new MedPeftException($"{path}: field \"peft_type\" is missing"),
            JsonValue v when v.GetValueKind() == JsonValueKind.String => v.GetValue<string>(),
            _ => throw new MedPeftException($"{path}: field \"peft_type\" must be a string"),
        };
        return new PeftAdapterConfig(PeftConfigJson.Read(json, TuningMethods.ConfigTypeOf(type, path), path));
    }

    /// <summary>Writes a config as PEFT's save_pretrained does (inference_mode true, the given task type).</summary>
    public static void WriteConfig(string dir, PeftConfig config, string? taskType) =>
        WriteText(Path.Combine(dir, ConfigFile), PeftConfigJson.Write(config with { TaskType = taskType, InferenceMode = true }));

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
        WriteConfig(dir, config, taskType);
    }

    /// <summary>Writes the targeted norms' parameters as a PEFT LN_TUNING adapter.</summary>
    public static void SaveLnTuning(nn.Module model, string dir, IReadOnlyList<string> targetModules, string? taskType = "CAUSAL_LM")
    {
        var ps = LnTuningParameters(model, targetModules);
        if (ps.Count == 0) throw new MedPeftException($"{dir}: LN-tuning targets [{string.Join(", ", targetModules)}] match no module");
        Directory.CreateDirectory(dir);
        Checkpoint.SaveSafetensors(ps.Select(kv => (kv.Key, (Tensor)kv.Value)), Path.Combine(dir, WeightsFile));
        WriteConfig(dir, new LnTuningConfig { TargetModules = targetModules }, taskType);
    }

    /// <summary>Writes the model's (IA)³ vectors (PEFT keys base_model.model.&lt;module&gt;.ia3_l, PEFT shapes) and config.</summary>
    public static void SaveIa3(nn.Module model, string dir, Ia3Config config, string? taskType = "CAUSAL_LM")
    {
        var tensors = Ia3.AdapterTensors(model);
        if (tensors.Count == 0) throw new MedPeftException($"{dir}: the model has no IA3 layers to save");
        Directory.CreateDirectory(dir);
        Checkpoint.SaveSafetensors(tensors.Select(kv => (kv.Key, kv.Value.contiguous())), Path.Combine(dir, WeightsFile));
        WriteConfig(dir, config, taskType);
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
        // PEFT writes the config after _prepare_prompt_learning_config filled in the model's sizes and a missing
        // encoder_hidden_size (prefix without the MLP: unused, still written as token_dim; P-tuning: null → token_dim).
        PromptLearningConfig config = type switch
        {
            "PREFIX_TUNING" => prefix! with { EncoderHiddenSize = prefix.PrefixProjection ? prefix.EncoderHiddenSize : tokenDim },
            "PROMPT_TUNING" => prompt!,
            _ => pTuning! with { EncoderHiddenSize = pTuning.HiddenSize(tokenDim) },
        };
        WriteConfig(dir, config with
        {
            NumVirtualTokens = n, TokenDim = tokenDim, NumLayers = layers, NumAttentionHeads = heads, NumTransformerSubmodules = 1, MedpeftTowers = named,
        }, taskType);
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
