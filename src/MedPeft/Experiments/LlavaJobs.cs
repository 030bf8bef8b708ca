using System.Text.Json;
using System.Text.Json.Nodes;
using MedPeft.Data;
using MedPeft.Evaluation;
using MedPeft.Models;
using MedPeft.Models.Llava;
using MedPeft.Training;
using MedPeft.Tuning;
using TorchSharp;
using static TorchSharp.torch;

namespace MedPeft.Experiments;

/// <summary>A LLaVA model folder ready to use: the model (weights loaded, eval mode), its tokenizer, the conversation
/// template and the resolved ids.</summary>
public sealed class LlavaSession : IDisposable
{
    public required LlavaForConditionalGeneration Model { get; init; }
    public required ModelSpec Spec { get; init; }
    public required ITextTokenizer Tokenizer { get; init; }
    public required ConversationTemplate Template { get; init; }
    public required string Dir { get; init; }
    public int ImageTokenId => (int)Model.Config.ImageTokenIndex;
    /// <summary>The id rows are padded with: the tokenizer's pad, else the model config's, else unk, else 0 (LLaVA sets
    /// pad = unk for LLaMA tokenizers).</summary>
    public required int PadId { get; init; }
    public required int EosId { get; init; }
    /// <summary>Original LLaVA / LLaVA-Med v1 folders with mm_use_im_start_end: the &lt;im_start&gt; / &lt;im_end&gt; ids that
    /// wrap the image patches (model_vqa_med.py: Q\n&lt;im_start&gt;&lt;im_patch&gt;×N&lt;im_end&gt;); null otherwise.</summary>
    public (int Start, int End)? ImageBrackets { get; init; }
    /// <summary>How images become the CLIP tower's square input (the folder's preprocessor_config.json, else CLIP's
    /// shortest-edge resize + centre crop; pad to square first when config.json has image_aspect_ratio "pad").</summary>
    public required ImageGeometry Geometry { get; init; }

    public void Dispose() { Model.Dispose(); Tokenizer.Dispose(); }
}

/// <summary>A left-padded LLaVA batch: ids with one image token per row, mask, labels (−100 on the prompt and
/// padding) and the images.</summary>
public sealed record LlavaBatch(Tensor InputIds, Tensor AttentionMask, Tensor? Labels, Tensor PixelValues);

/// <summary>A LLaVA batch as CPU data (made on the prefetch thread): token rows with their prompt lengths, and images
/// as cached tensors or augmented pixels.</summary>
public sealed record LlavaPreparedBatch(IReadOnlyList<(int[] Ids, int PromptLen)> Rows, bool WithLabels, Tensor[]? CachedImages, float[][]? Pixels);

/// <summary>The LLaVA side of `medpeft train` / `medpeft eval` (Med-VQA; report datasets train as instruction →
/// report and are scored by `medpeft eval --task report`): prompt = the template around the question
/// with the image placeholder, target = answer + EOS; left padding everywhere (the merge and generation expect it);
/// greedy or beam decoding with the KV cache; the same VQA scorer and outputs as the BLIP path.</summary>
public static class LlavaJobs
{
    public static LlavaSession Open(string dir, Device device, string? template, Action<string>? log = null, string dtype = "auto")
    {
        if (!Directory.Exists(dir)) throw new MedPeftException($"{dir}: model folder not found");
        // Everything cheap is checked before the weights are read (minutes for a 7B model).
        var spec = Presets.FromFolder(dir);
        var c = (LlavaConfig)spec.Config;
        var configPath = Path.Combine(dir, "config.json");
        var configJson = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(configPath));
        var tokenizer = TextTokenizers.Load(dir);
        try
        {
            foreach (var note in spec.Notes) log?.Invoke($"{spec.Name}: {note}");
            if (tokenizer.Special.Image is int img && img != c.ImageTokenIndex)
                throw new MedPeftException($"{configPath}: image_token_index {c.ImageTokenIndex} differs from the tokenizer's <image> id {img}");
            var eos = tokenizer.Special.Eos ?? (int?)c.TextConfig.EosTokenId ?? throw new MedPeftException($"{tokenizer.Source}: no eos_token");
            var pad = tokenizer.Special.Pad ?? (int?)c.PadTokenId ?? tokenizer.Special.Unk ?? 0;
            // A folder MedPeft saved records the template it was trained with ("conversation_template", ignored by HF).
            var saved = configJson?["conversation_template"]?.GetValue<string>();
            var chosen = template is not null ? ConversationTemplates.Get(template)
                : saved is not null ? ConversationTemplates.Get(saved)
                : ConversationTemplates.DefaultFor(c.TextConfig.IsMistral, spec.OriginalLayout);
            log?.Invoke($"{spec.Name}: conversation template {chosen.Name}{(template is null ? " (default for this model)" : "")}");
            (int, int)? brackets = null;
            if (configJson?["mm_use_im_start_end"]?.GetValue<bool>() == true)
            {
                if (tokenizer.TokenToId("<im_start>") is int st && tokenizer.TokenToId("<im_end>") is int en) brackets = (st, en);
                else throw new MedPeftException($"{configPath}: mm_use_im_start_end is true but the tokenizer has no <im_start>/<im_end> tokens");
                log?.Invoke($"{spec.Name}: image features wrapped in <im_start> {st} / <im_end> {en} (mm_use_im_start_end)");
            }
            var geometry = ImageGeometry.FromFolder(dir, c.VisionConfig.ImageSize, clipDefault: true);
            log?.Invoke($"{spec.Name}: images {geometry.Describe(c.VisionConfig.ImageSize)}");
            var weights = Precision.Resolve(dtype, dir);
            log?.Invoke($"{spec.Name}: weights in {Precision.Name(weights)}{(Precision.Parse(dtype) is null ? " (auto)" : "")}");
            var (module, _) = Presets.LoadFolder(dir, device, weights);
            return new LlavaSession
            {
                Model = (LlavaForConditionalGeneration)module, Spec = spec, Tokenizer = tokenizer, Template = chosen, Dir = dir,
                PadId = pad, EosId = eos, ImageBrackets = brackets, Geometry = geometry,
            };
        }
        catch { tokenizer.Dispose(); throw; }
    }

    /// <summary>Prompt ids as LLaVA's tokenizer_image_token builds them: the text split at &lt;image&gt;, the first chunk
    /// with the tokenizer's special tokens (BOS), the image token id between chunks.</summary>
    public static int[] PromptIds(LlavaSession s, string question)
    {
        var chunks = s.Template.Prompt(question).Split(TextTokenizers.ImageToken);
        var ids = new List<int>(s.Tokenizer.Encode(chunks[0], addSpecialTokens: true));
        foreach (var chunk in chunks.Skip(1))
        {
            if (s.ImageBrackets is var (start, _)) ids.Add(start);
            ids.Add(s.ImageTokenId);
            if (s.ImageBrackets is var (_, end)) ids.Add(end);
            if (chunk.Length > 0) ids.AddRange(s.Tokenizer.Encode(chunk, addSpecialTokens: false));
        }
        return ids.ToArray();
    }

    public static LlavaBatch Batch(LlavaSession s, IReadOnlyList<VqaSample> samples, ImageCache images, Device device, bool withLabels, int maxAnswerTokens = 32) =>
        Batch(s, Prepare(s, samples, images, withLabels, maxAnswerTokens), images.Processor.Size, device);

    /// <summary>The CPU half of a batch (prefetch thread): token rows and images — cached, or with
    /// <paramref name="augmentation"/> freshly augmented per (seed, epoch, sample) as the BLIP batchers do.</summary>
    public static LlavaPreparedBatch Prepare(LlavaSession s, IReadOnlyList<VqaSample> samples, ImageCache images, bool withLabels, int maxAnswerTokens = 32,
        Augmentation? augmentation = null, long augmentationSeed = 42, int epoch = 0)
    {
        var rows = new List<(int[] Ids, int PromptLen)>();
        foreach (var x in samples)
        {
            var prompt = PromptIds(s, x.Question);
            if (!withLabels) { rows.Add((prompt, prompt.Length)); continue; }
            var answer = s.Tokenizer.Encode(x.Answer, addSpecialTokens: false).Take(maxAnswerTokens);
            rows.Add(([.. prompt, .. answer, s.EosId], prompt.Length));
        }
        Tensor[]? cached = null; float[][]? pixels = null;
        if (augmentation is { } aug)
            pixels = samples.Select(x => images.Processor.Pixels(x.ImagePath, aug, augmentationSeed, epoch, x.Id + "\n" + x.ImagePath)).ToArray();
        else cached = samples.Select(x => images.Get(x.ImagePath)).ToArray();
        return new LlavaPreparedBatch(rows, withLabels, cached, pixels);
    }

    /// <summary>The tensor half (training thread): rows left-padded, labels −100 on prompt and padding.</summary>
    public static LlavaBatch Batch(LlavaSession s, LlavaPreparedBatch p, int imageSize, Device device)
    {
        var rows = p.Rows;
        int width = rows.Max(r => r.Ids.Length), n = rows.Count;
        var ids = new long[n * width];
        var mask = new long[n * width];
        var labels = new long[n * width];
        for (int i = 0; i < n; i++)
        {
            int offset = width - rows[i].Ids.Length;   // left padding
            for (int j = 0; j < width; j++)
            {
                int k = j - offset;
                bool real = k >= 0;
                ids[i * width + j] = real ? rows[i].Ids[k] : s.PadId;
                mask[i * width + j] = real ? 1 : 0;
                labels[i * width + j] = real && k >= rows[i].PromptLen ? rows[i].Ids[k] : -100;
            }
        }
        var pixels = VqaBatcher.Stack(p.CachedImages, p.Pixels, imageSize, device);
        return new LlavaBatch(torch.tensor(ids, [n, width], device: device), torch.tensor(mask, [n, width], device: device),
            p.WithLabels ? torch.tensor(labels, [n, width], device: device) : null, pixels);
    }

    /// <summary>Decoding defaults for a LLaVA folder: generation_config.json, else greedy with 32 new tokens (short
    /// Med-VQA answers), EOS/pad from the tokenizer.</summary>
    public static GenerationOptions Decoding(LlavaSession s, DecodingOverrides? cli = null) =>
        (cli ?? new()).ApplyTo(GenerationConfigFile.Read(s.Dir).ForDecoderOnly(new GenerationOptions(MaxNewTokens: 32, MinNewTokens: 0, NumBeams: 1, EosTokenId: s.EosId, PadTokenId: s.PadId)));

    /// <summary>Generated text per sample (template stop string cut, trimmed), in sample order.</summary>
    public static List<string> GenerateTexts(LlavaSession s, IReadOnlyList<VqaSample> samples, ImageCache images, GenerationOptions decoding, Device device, int batchSize = 16)
    {
        s.Model.eval();
        var texts = new List<string>(samples.Count);
        for (int i = 0; i < samples.Count; i += batchSize)
        {
            using var scope = torch.NewDisposeScope();
            var chunk = samples.Skip(i).Take(batchSize).ToList();
            var b = Batch(s, chunk, images, device, withLabels: false);
            var result = s.Model.GenerateAny(b.PixelValues, b.InputIds, b.AttentionMask, decoding);
            int promptWidth = (int)b.InputIds.shape[1];
            for (int j = 0; j < chunk.Count; j++)
                texts.Add(s.Template.CleanOutput(s.Tokenizer.Decode(result.Sequences[j].Skip(promptWidth))));
        }
        return texts;
    }

    public static List<VqaPrediction> Predict(LlavaSession s, IReadOnlyList<VqaSample> samples, ImageCache images, GenerationOptions decoding, Device device, int batchSize = 16) =>
        GenerateTexts(s, samples, images, decoding, device, batchSize)
            .Select((text, i) => new VqaPrediction(samples[i].Id, samples[i].Question, samples[i].Answer, text, samples[i].AnswerType)).ToList();

    // ---------------------------------------------------------------- report generation

    /// <summary>MedPeft's instruction for report generation: LLaVA-Med publishes no prompt for IU-Xray / MIMIC-CXR.</summary>
    public const string DefaultReportPrompt = "Write the radiology report for this chest X-ray.";
    /// <summary>Report targets are truncated to this many tokens in training; generation's default budget.</summary>
    public const int ReportTokens = 128;

    /// <summary>A report split as instruction examples: the first image (LLaVA takes one image per prompt; IU-Xray's
    /// frontal view), the prompt, and the report cleaned as R2Gen cleans it (the metrics' input).</summary>
    public static List<VqaSample> ReportExamples(string format, string dir, string split, string? prompt = null)
    {
        bool mimic = DatasetFormats.Get(format).Name == DatasetFormats.MimicCxr;
        return DatasetFormats.ReadReports(format, dir, split)
            .Select(r => new VqaSample(r.Id, r.ImagePaths[0], prompt ?? DefaultReportPrompt,
                mimic ? ReportCleaning.CleanMimicCxr(r.Report) : ReportCleaning.CleanIuXray(r.Report), null))
            .ToList();
    }

    static List<ReportPair> ReportPairs(string format, IReadOnlyList<VqaSample> examples, IReadOnlyList<string> generated)
    {
        bool mimic = DatasetFormats.Get(format).Name == DatasetFormats.MimicCxr;
        return examples.Select((x, i) => new ReportPair(x.Id, mimic ? ReportCleaning.CleanMimicCxr(generated[i]) : ReportCleaning.CleanIuXray(generated[i]),
            [x.Answer])).ToList();
    }

    /// <summary>`medpeft eval --task report`: generates a report per study of a split and scores them with
    /// <see cref="ReportMetrics"/> (BLEU-1..4, ROUGE-L, CIDEr-D on R2Gen-cleaned text).</summary>
    public static (ReportScores Scores, List<ReportPair> Pairs) EvaluateReports(string modelDir, string dataDir, string format, string split,
        DecodingOverrides? decoding, string device = "cpu", string normalization = "clip", string? adapterDir = null, string? template = null,
        string? prompt = null, Action<string>? log = null, string dtype = "auto")
    {
        if (DatasetFormats.TaskOf(format) != DatasetTask.Report) throw new MedPeftException($"--format {format}: not a report dataset (iu-xray, mimic-cxr)");
        var dev = TorchRuntime.ResolveDevice(device);
        using var s = Open(modelDir, dev, template, log, dtype);
        if (adapterDir is not null) PeftAdapters.Load(s.Model, adapterDir);
        using var images = Images(s, NormalizationFor(normalization));
        var examples = ReportExamples(format, dataDir, split, prompt);
        if (examples.Count == 0) throw new MedPeftException($"{dataDir}: no {split} reports");
        var texts = GenerateTexts(s, examples, images, ReportDecoding(s, decoding), dev);
        var pairs = ReportPairs(format, examples, texts);
        return (ReportMetrics.Compute(pairs), pairs);
    }

    static GenerationOptions ReportDecoding(LlavaSession s, DecodingOverrides? cli = null) =>
        (cli ?? new()).ApplyTo(GenerationConfigFile.Read(s.Dir).ForDecoderOnly(new GenerationOptions(MaxNewTokens: ReportTokens, MinNewTokens: 0, NumBeams: 1, EosTokenId: s.EosId, PadTokenId: s.PadId)));

    static ImageCache Images(LlavaSession s, string normalization) =>
        new(new ImageProcessor(s.Model.Config.VisionConfig.ImageSize, Normalization.Get(normalization), s.Geometry));

    /// <summary>CLIP's normalisation unless the job names another (the BLIP path's default "blip" has the same
    /// mean/std as CLIP).</summary>
    static string NormalizationFor(string requested) => requested == "blip" ? "clip" : requested;

    internal static FineTuneSummary Train(VqaTrainJob job, IProgress<TrainProgress>? progress = null, CancellationToken cancel = default)
    {
        var device = TorchRuntime.ResolveDevice(job.Device);
        using var s = Open(job.ModelDir, device, job.Template, job.Log, job.Train.DType);
        var model = s.Model;
        var strategy = TuningStrategy.Parse(job.Strategy, TowerLayout.Llava,
            VqaJobs.MethodOverrides(job, TowerLayout.Llava, text => s.Tokenizer.Encode(text, addSpecialTokens: true)));
        var report = strategy.Apply(model);
        bool reports = FineTuning.TaskFor(job.Task, job.Format) == "report";
        List<VqaSample> Read(string split) => reports ? ReportExamples(job.Format, job.DataDir, split, job.ReportPrompt)
            : DatasetFormats.ReadVqa(job.Format, job.DataDir, split).ToList();
        var train = Read(Splits.Train);
        var validation = Read(Splits.Validation);
        if (job.ValidationLimit > 0) validation = validation.Take(job.ValidationLimit).ToList();
        int maxAnswerTokens = reports ? ReportTokens : 32;
        using var images = Images(s, NormalizationFor(job.Normalization));
        double lr = job.LearningRate ?? StrategyDefaults.LearningRate(job.Strategy);
        Directory.CreateDirectory(job.OutDir);
        var decoding = (reports ? ReportDecoding(s) : Decoding(s)) with { NumBeams = 1 };
                // Selection metric: VQA overall accuracy, or BLEU-4 (×100) for reports as R2Gen selects.
        double Validate()
        {
            if (!reports) return VqaScorer.Score(Predict(s, validation, images, decoding, device)).OverallAccuracy;
            return 100 * ReportMetrics.Compute(ReportPairs(job.Format, validation, GenerateTexts(s, validation, images, decoding, device))).Bleu4;
        }
        job.Augmentation?.Validate();
        TorchRuntime.Seed(job.Train.Seed);
        var result = Trainer.Run(model, train,
            (batch, epoch) => Prepare(s, batch, images, withLabels: true, maxAnswerTokens, job.Augmentation, job.Train.Seed, epoch),
            p =>
            {
                var b = Batch(s, p, images.Processor.Size, device);
                return model.forward(new LlavaInput(b.InputIds, b.PixelValues, b.AttentionMask, b.Labels)).Loss!;
            },
            job.Train with { LearningRate = lr, LogPath = Path.Combine(job.OutDir, "log.jsonl") },
            validate: validation.Count == 0 ? null : Validate,
            progress: progress, cancel: cancel);
        var test = job.ScoreTest.Count == 0 ? [] : Read(Splits.Test);
        var tests = job.ScoreTest.Select(o => reports
            ? new InMemoryTest(o, null, ReportPairs(job.Format, test, GenerateTexts(s, test, images, ReportDecoding(s, o), device)))
            : new InMemoryTest(o, Predict(s, test, images, Decoding(s, o), device), null)).ToList();
        var adapter = VqaJobs.SaveAdapter(model, strategy, Path.Combine(job.OutDir, "adapter"));
        bool adapterRequired = TrainedOutputs.Finalize(model, strategy);
        Save(s, Path.Combine(job.OutDir, "model"));
        var summary = new JsonObject
        {
            ["strategy"] = job.Strategy, ["learning_rate"] = lr, ["trainable"] = report.Trainable, ["total"] = report.Total,
            ["steps"] = result.Steps, ["train_seconds"] = result.TrainSeconds, ["steps_per_second"] = result.StepsPerSecond,
            ["peak_memory_bytes"] = result.PeakMemoryBytes, ["best_step"] = result.BestStep,
            ["towers"] = report.ToJson()["towers"]!.DeepClone(),
            ["adapter"] = adapter, [TrainedOutputs.AdapterRequiredKey] = adapterRequired, ["template"] = s.Template.Name, ["task"] = reports ? "report" : "vqa",
            ["augmentation"] = VqaJobs.AugmentationJson(job.Augmentation), ["data_wait_seconds"] = result.DataWaitSeconds, ["reproducibility"] = Reproducibility.Settings?.DeepClone(),
        };
        summary.Add(TrainedOutputs.ValidationKey(reports ? "report" : "vqa"), result.BestValidation);
        AtomicFile.WriteAllText(Path.Combine(job.OutDir, "train_summary.json"), summary.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        return new FineTuneSummary(report, result, lr, job.OutDir, reports ? "report" : "vqa") { Tests = tests };
    }

    public static (VqaScores Scores, List<VqaPrediction> Predictions) Evaluate(string modelDir, string dataDir, string format, string split,
        DecodingOverrides? decoding, string device = "cpu", string normalization = "clip", string? adapterDir = null, string? template = null,
        Action<string>? log = null, string dtype = "auto")
    {
        var dev = TorchRuntime.ResolveDevice(device);
        using var s = Open(modelDir, dev, template, log, dtype);
        if (adapterDir is not null) PeftAdapters.Load(s.Model, adapterDir);
        using var images = Images(s, NormalizationFor(normalization));
        var samples = DatasetFormats.ReadVqa(format, dataDir, split).ToList();
        var predictions = Predict(s, samples, images, Decoding(s, decoding), dev);
        return (VqaScorer.Score(predictions), predictions);
    }

    /// <summary>Writes the model as an HF LLaVA folder (config.json with the resolved image_token_index,
    /// model.safetensors) plus the source folder's tokenizer and generation files, atomically (temporary sibling,
    /// then rename).</summary>
    public static void Save(LlavaSession s, string dir)
    {
        var full = Path.GetFullPath(dir);
        var tmp = full.TrimEnd('/') + $".tmp-{Environment.ProcessId}";
        if (Directory.Exists(tmp)) Directory.Delete(tmp, true);
        Directory.CreateDirectory(tmp);
        var config = s.Model.Config.Clone();
        config.Architectures = ["LlavaForConditionalGeneration"];
        // The weights are saved in the dtype the model ran in: say so, as save_pretrained does.
        config.TorchDtype = s.Model.language_model.lm_head.parameters().First().dtype switch
        {
            ScalarType.BFloat16 => "bfloat16", ScalarType.Float16 => "float16", _ => "float32",
        };
        var json = (JsonObject)JsonNode.Parse(config.ToJson())!;
        json["conversation_template"] = s.Template.Name;
        if (s.ImageBrackets is not null) json["mm_use_im_start_end"] = true;   // keeps <im_start>/<im_end> on reload
        if (s.Geometry.PadToSquare) json["image_aspect_ratio"] = "pad";        // LLaVA's field; HF ignores it, MedPeft reads it
        File.WriteAllText(Path.Combine(tmp, "config.json"), json.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        Checkpoint.SaveSafetensors(s.Model, Path.Combine(tmp, "model.safetensors"));
        foreach (var f in new[] { "tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                                  "vocab.txt", GenerationConfigFile.FileName, "preprocessor_config.json" })
            if (File.Exists(Path.Combine(s.Dir, f))) File.Copy(Path.Combine(s.Dir, f), Path.Combine(tmp, f));
        // An original-layout source has no preprocessor_config.json (LLaVA loads CLIP's processor by name): write the
        // geometry used, so HF's LlavaProcessor and a reload preprocess the same way.
        var pre = Path.Combine(tmp, ImageGeometry.FileName);
        if (!File.Exists(pre))
            File.WriteAllText(pre, s.Geometry.ToPreprocessorConfig(s.Model.Config.VisionConfig.ImageSize, Normalization.Clip)
                .ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        if (Directory.Exists(full)) Directory.Delete(full, true);
        Directory.Move(tmp, full);
    }
}
