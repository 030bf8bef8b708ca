using System.Text.Json.Nodes;
using MedPeft.Data;
using MedPeft.Data.Synthetic;
using MedPeft.Evaluation;
using MedPeft.Experiments;
using MedPeft.Models;
using MedPeft.Models.Blip;
using MedPeft.Tests.Cli;
using MedPeft.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace MedPeft.Tests.Training;

/// <summary>Report generation (BLIP captioning-style) on the quick benchmark's synthetic IU-Xray split, with a tiny
/// random BLIP saved in the VQA layout (as the embedded study's pretrained model is).</summary>
public class ReportTaskTests
{
    /// <summary>Quick's IU-Xray split (100 / 15 / 25 studies, two views each), few VQA images (unused here).</summary>
    static readonly SyntheticBenchOptions Bench = SyntheticBenchOptions.Quick with { TrainImages = 4, ValidationImages = 2, TestImages = 2, PretrainImages = 1 };

    static (string Model, string Data) Setup(string root) => TinyBlipFolder.Create(root, Bench, seed: 11);

    [Fact]
    public void A_vqa_folder_loads_as_a_captioning_model_dropping_only_the_text_encoder()
    {
        var root = Directory.CreateTempSubdirectory("medpeft-cap-").FullName;
        var (dir, _) = Setup(root);
        using var vqa = BlipModelFolder.Load(dir, CPU);
        var (cap, load) = BlipModelFolder.LoadCaptioning(dir, CPU);
        using var _ = cap;
        var encoder = vqa.state_dict().Where(kv => kv.Key.StartsWith("text_encoder.")).ToList();
        Assert.Equal(encoder.Count, load.DroppedTensors.Count);
        Assert.Equal(encoder.Sum(kv => kv.Value.numel()), load.DroppedParameters);
        Assert.Equal("BlipForQuestionAnswering", load.SourceArchitecture);
        Assert.Contains("text_encoder tensors", load.Describe());
        var v = vqa.state_dict();
        foreach (var (k, t) in cap.state_dict()) Assert.True(t.eq(v[k]).all().item<bool>(), k);

        // Saved as a captioning folder, it reloads with nothing dropped.
        var capDir = Path.Combine(root, "cap");
        BlipModelFolder.Save(cap, capDir, Path.Combine(dir, "vocab.txt"));
        Assert.Equal("BlipForConditionalGeneration", BlipModelFolder.LoadConfig(capDir).Architectures![0]);
        var (again, load2) = BlipModelFolder.LoadCaptioning(capDir, CPU);
        using var __ = again;
        Assert.Empty(load2.DroppedTensors);
    }

    [Fact]
    public void Batches_mask_the_prompt_and_padding_and_one_view_is_hfs_forward()
    {
        var root = Directory.CreateTempSubdirectory("medpeft-repb-").FullName;
        var (dir, data) = Setup(root);
        var tok = BlipModelFolder.LoadTokenizer(dir);
        var (model, _) = BlipModelFolder.LoadCaptioning(dir, CPU);
        using var m = model;
        using var images = new ImageCache(new ImageProcessor(64, Normalization.Blip));
        var samples = DatasetFormats.ReadReports("iu-xray", SyntheticBench.IuXrayRoot(data), "train").Take(3).ToList();
        var opts = new ReportTaskOptions { Prompt = "findings :", MaxWords = 12 };
        var batcher = new ReportBatcher(tok, images, opts, 64);
        Assert.Equal(1 + tok.Encode("findings :", 64).Length - 2, batcher.PromptLength);
        Assert.Equal(ReportCleaning.Truncate(ReportCleaning.CleanIuXray(samples[0].Report), 12), batcher.Reference(samples[0]));
        Assert.Equal(12, batcher.Reference(samples[0]).Split(' ').Length);

        // A generated report is put in the references' form: decoding the target ids gives the reference back.
        var whole = new ReportBatcher(tok, images, opts with { MaxWords = 0 }, 64);
        var shortest = samples.MinBy(s => s.Report.Length)!;
        Assert.Equal(whole.Reference(shortest), whole.Candidate(whole.EncodeTarget(shortest).Select(i => (long)i)));

        var x = batcher.Batch(batcher.Prepare(samples, 0), CPU);
        Assert.Equal([6L, 3, 64, 64], x.PixelValues.shape);   // 3 studies × 2 views
        var labels = x.Labels.data<long>().ToArray();
        var ids = x.InputIds.data<long>().ToArray();
        int w = (int)x.InputIds.shape[1];
        for (int r = 0; r < 3; r++)
            for (int j = 0; j < w; j++)
            {
                bool prompt = j < batcher.PromptLength, pad = ids[r * w + j] == tok.PadId;
                Assert.Equal(prompt || pad ? -100 : ids[r * w + j], labels[r * w + j]);
            }
        Assert.Equal(tok.DecId, ids[0]);
        var loss2 = ReportBatcher.Loss(model, x).item<float>();
        Assert.True(float.IsFinite(loss2) && loss2 > 0);

        var one = new ReportBatcher(tok, images, opts with { Views = 1 }, 64);
        var y = one.Batch(one.Prepare(samples, 0), CPU);
        Assert.Equal([3L, 3, 64, 64], y.PixelValues.shape);
        var viaHf = model.forward(new BlipCaptionInput(y.PixelValues, y.InputIds, y.AttentionMask, y.Labels)).Loss!.item<float>();
        Assert.Equal(viaHf, ReportBatcher.Loss(model, y).item<float>(), 5);

        var bad = samples[0] with { ImagePaths = [samples[0].ImagePaths[0]] };
        var e = Assert.Throws<MedPeftException>(() => batcher.Prepare([bad], 0));
        Assert.Contains(bad.Id, e.Message);
    }

    [Fact]
    public void FineTune_entry_point_trains_and_scores_the_synthetic_iu_xray_split()
    {
        var root = Directory.CreateTempSubdirectory("medpeft-repft-").FullName;
        var (dir, data) = Setup(root);
        var iu = SyntheticBench.IuXrayRoot(data);
        List<ReportSample> Split(string s) => DatasetFormats.ReadReports("iu-xray", iu, s).ToList();
        var (train, val, test) = (Split("train"), Split("validation"), Split("test"));
        Assert.Equal((100, 15, 25), (train.Count, val.Count, test.Count));
        // The whole train split for one epoch; selection on 5 validation studies, 10 test studies (test-time budget).
        var options = new ReportTaskOptions { BatchSize = 20, ValidationLimit = 5, Decoding = new GenerationOptions(MaxNewTokens: 16, MinNewTokens: 5, NumBeams: 2) };
        var r = ReportJobs.FineTune(dir, "ln", 1e-2, 1, train, val, test.Take(10).ToList(), CPU, seed: 3, options);
        Assert.Equal(5, r.Steps);
        Assert.Equal(10, r.TestPredictions.Count);
        Assert.All(r.TestPredictions, p => Assert.True(p.Candidate.Split(' ', StringSplitOptions.RemoveEmptyEntries).Length >= 1));
        using (var vqa = BlipModelFolder.Load(dir, CPU))
        {
            long expectedTotal = vqa.parameters().Sum(p => p.numel()) - vqa.text_encoder.parameters().Sum(p => p.numel());
            Assert.Equal(expectedTotal, r.Total);
        }
        Assert.InRange(r.Trainable, 1, r.Total / 10);
        foreach (var s in new[] { r.Test.Bleu1, r.Test.Bleu4, r.Test.RougeL }) Assert.InRange(s, 0, 1);
        Assert.True(r.Test.Cider >= 0);
        Assert.NotNull(r.BestValidationBleu4);
        Assert.True(r.TrainSeconds > 0 && r.PeakMemoryBytes > 0);
        // The scores are pycocoevalcap's on the returned pairs.
        Assert.Equal(ReportMetrics.Compute(r.TestPredictions).Bleu4, r.Test.Bleu4, 12);
    }

    sealed class Quiet : IStudyProgress
    {
        public void Stage(string message) { }
        public void Overall(int done, int total, TimeSpan? eta) { }
        public IProgress<TrainProgress>? RunStarted(StudyRun run) => null;
        public void RunFinished(StudyRun run, JsonObject result) { }
    }

    [Fact]
    public void Study_report_runs_on_a_blip_folder_and_an_iu_xray_folder_through_report_jobs_and_resume_records_nothing_new()
    {
        var root = Directory.CreateTempSubdirectory("medpeft-repstudy-").FullName;
        // A small split: the untrained decoder generates to the length limit, so test studies dominate the time.
        var (dir, data) = TinyBlipFolder.Create(root, Bench with { ReportTrain = 16, ReportVal = 4, ReportTest = 6 }, seed: 11);
        var none = new Dictionary<string, string>();
        var spec = new StudySpec("rep", [new StudyModel("tiny", null, dir)],
            [new StudyDataset("IU", "report", DatasetFormats.IuXray, SyntheticBench.IuXrayRoot(data), Splits.Train, Splits.Validation, Splits.Test, [])],
            [new StudyStrategy("zero-shot", StudyStrategy.ZeroShot, none, [null]), new StudyStrategy("prompt", "prompt", none, [null]),
             // prefix: its virtual tokens shift the decoder's positions (HF's past length) — generating to the limit
             // must still fit the position table
             new StudyStrategy("prefix", "prefix", none, [null]),
             // ptuning-v1 saves a P_TUNING adapter: its run must be scored with it (issue 11: the base was scored)
             new StudyStrategy("ptuning-v1", "ptuning-v1", none, [null]),
             new StudyStrategy("ln", "ln", none, [double.NaN])],   // learning_rate: auto — the LR range test on validation BLEU-4
            new StudyTraining { Epochs = 1, MaxSteps = 2, BatchSize = 8, ValidationLimit = 4, LrSweepSteps = 1 }, "test");
        var outDir = Path.Combine(root, "out");
        var options = new StudyRunOptions { OutDir = outDir, CacheDir = Path.Combine(root, "cache") };
        var summary = new StudyRunner(spec, options, new Quiet()).Run();
        Assert.Empty(summary.Failures);
        Assert.Equal(5, summary.RanHere);
        var byMethod = summary.Finished.ToDictionary(f => f.Method, f => f.Result);
        var runs = StudyPlan.Expand(spec).Runs;
        foreach (var (method, result) in byMethod)
        {
            var test = result["metrics"]!["test"]!.AsObject();
            Assert.Equal(6, test["reports"]!.GetValue<int>());
            Assert.Equal("report", result["task"]!.GetValue<string>());
            // Every score equals an independent rescoring of what the run saved (the base for zero-shot; model/ +
            // adapter/ as train_summary.json says for the others) with the same decoding.
            var (model, adapter) = method == "zero-shot" ? (dir, null) : TrainedOutputs.ForScoring(StudyRunner.RunDir(outDir, runs.Single(r => r.Method == method)));
            var rescored = ReportJobs.Evaluate(model, SyntheticBench.IuXrayRoot(data), DatasetFormats.IuXray, Splits.Test, adapterDir: adapter).Scores;
            foreach (var (k, v) in rescored.ToDictionary()) Assert.Equal(v, test[k]!.GetValue<double>(), 12);
        }
        // The captioning model's parameters (the VQA folder's text_encoder is not part of it), for zero-shot as for training.
        long total;
        using (var vqa = BlipModelFolder.Load(dir, CPU)) total = vqa.parameters().Sum(p => p.numel()) - vqa.text_encoder.parameters().Sum(p => p.numel());
        Assert.Equal(total, byMethod["zero-shot"]["total"]!.GetValue<long>());
        Assert.Equal(total + 20 * 128, byMethod["prompt"]["total"]!.GetValue<long>());   // + 20 virtual tokens × hidden 128
        Assert.Equal(2, byMethod["prompt"]["steps"]!.GetValue<int>());
        // Each fine-tuning run has `medpeft train --task report`'s outputs; prompt tuning is scored with its adapter.
        var promptDir = StudyRunner.RunDir(outDir, StudyPlan.Expand(spec).Runs.Single(r => r.Method == "prompt"));
        Assert.True(BlipModelFolder.IsModelFolder(Path.Combine(promptDir, "model")));
        Assert.Equal(Path.Combine(promptDir, "adapter"), TrainedOutputs.ForScoring(promptDir).Adapter);

        var ln = byMethod["ln"];
        Assert.Equal("lr-sweep", ln["learning_rate_source"]!.GetValue<string>());
        Assert.Equal(LrSweep.Grid("ln"), ln["lr_sweep"]!.AsArray().Select(t => t!["learning_rate"]!.GetValue<double>()));
        Assert.Contains(ln["learning_rate"]!.GetValue<double>(), LrSweep.Grid("ln"));
        Assert.False(Directory.Exists(Path.Combine(StudyRunner.RunDir(outDir, StudyPlan.Expand(spec).Runs.Single(r => r.Method == ln["method"]!.GetValue<string>())), "lr-sweep")));

        var again = new StudyRunner(spec, options, new Quiet()).Run();
        Assert.Equal((0, 5), (again.RanHere, again.Skipped));
    }
}
