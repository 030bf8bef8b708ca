using System.Text.Json.Nodes;
using MedPeft.Data;
using MedPeft.Data.Synthetic;
using MedPeft.Experiments;
using MedPeft.Tests.Cli;
using MedPeft.Training;

namespace MedPeft.Tests.Experiments;

/// <summary>Regression tests for the defects of issue 11 that the matrix test does not reach directly.</summary>
public class PipelineRegressionTests
{
    static (StudyRun Run, RunContext Ctx, string Root) SweepRun()
    {
        var root = Directory.CreateTempSubdirectory("medpeft-sweep-").FullName;
        var run = new StudyRun(0, new StudyModel("m", null, root), new StudyDataset("d", "vqa", "slake", root, "train", "validation", "test", []),
            new StudyStrategy("ln", "ln", new Dictionary<string, string>(), [double.NaN]), double.NaN, 1, new StudyTraining());
        return (run, new RunContext(Path.Combine(root, "run"), root, "cpu", null, _ => { }, default), root);
    }

    static TrainResult Finished(double validation, double loss) => new(3, 1, 3, [(3, loss)], validation, 3, 0);

    [Fact]
    public void Lr_sweep_records_only_divergence_as_a_failed_trial_and_any_other_error_fails_the_run()
    {
        var (run, ctx, root) = SweepRun();
        try
        {
            var grid = LrSweep.Grid("ln");
            // One rate diverges: it is recorded without validation and never picked.
            var (rate, trials) = LrSweep.ForRun(run, ctx, (lr, dir, steps) =>
                lr == grid[^1] ? throw new TrainingDivergedException("loss became NaN") : Finished(lr == grid[1] ? 70 : 50, 1.0));
            Assert.Equal(grid[1], rate);
            Assert.Equal(grid.Count, trials.Count);
            Assert.Null(trials[^1].Validation);
            Assert.True(double.IsNaN(trials[^1].FinalLoss));

            // A missing split (or any error that is not divergence) is the run's error, not a "diverged" trial.
            var e = Assert.Throws<MedPeftException>(() => LrSweep.ForRun(run, ctx, (lr, dir, steps) =>
                lr == grid[2] ? throw new MedPeftException("bench/validation.json: not found") : Finished(50, 1.0)));
            Assert.Equal("bench/validation.json: not found", e.Message);
        }
        finally { Directory.Delete(root, true); }
    }

    static readonly SyntheticBenchOptions Tiny = SyntheticBenchOptions.Quick with
    {
        TrainImages = 8, ValidationImages = 2, TestImages = 2, PretrainImages = 1, ReportTrain = 4, ReportVal = 1, ReportTest = 1,
    };

    /// <summary>Issue 11: LlavaJobs.Train merged LoRA only, so IA3 vectors and prompt modules stayed in model/, which
    /// then failed to load strictly. Now model/ loads (IA3 merged; the prompt lives in adapter/, as train_summary says).</summary>
    [Theory]
    [InlineData("ia3@llm", false)]
    [InlineData("prompt@llm", true)]
    public void Llava_train_outputs_of_ia3_and_prompt_tuning_load_for_eval(string strategy, bool adapterRequired)
    {
        var root = Directory.CreateTempSubdirectory("medpeft-llava-finalize-").FullName;
        try
        {
            var model = LlavaJobsTests.TinyFolder(root);
            var data = Path.Combine(root, "bench");
            SyntheticBench.EnsureGenerated(data, Tiny);
            var outDir = Path.Combine(root, "run");
            var r = CliRunner.Run("train", "--model", model, "--data", data, "--strategy", strategy, "--max-steps", "1", "--batch-size", "4",
                "--out", outDir, "--threads", "2");
            Assert.True(r.ExitCode == 0, r.StdErr + r.StdOut);
            var (trained, adapter) = TrainedOutputs.ForScoring(outDir);
            Assert.Equal(adapterRequired, adapter is not null);
            string[] eval = ["eval", "--model", trained, "--data", data, "--max-new-tokens", "3", "--json", "--threads", "2"];
            var e = CliRunner.Run(adapter is null ? eval : [.. eval, "--adapter", adapter]);
            Assert.True(e.ExitCode == 0, e.StdErr + e.StdOut);
        }
        finally { Directory.Delete(root, true); }
    }

    /// <summary>Issue 11: LLaVA training ignored --augment and --prefetch (it built batches inline from cached images),
    /// and report runs logged validation BLEU-4 as best_validation_acc.</summary>
    [Fact]
    public void Llava_training_augments_prefetches_and_names_the_report_selection_metric()
    {
        var root = Directory.CreateTempSubdirectory("medpeft-llava-aug-").FullName;
        try
        {
            var model = LlavaJobsTests.TinyFolder(root, textType: "llama");
            var data = Path.Combine(root, "bench");
            SyntheticBench.EnsureGenerated(data, Tiny);
            VqaTrainJob Job(string name, Augmentation? aug, int prefetch, string format = "slake") => new()
            {
                ModelDir = model, DataDir = format == "slake" ? data : SyntheticBench.IuXrayRoot(data), Format = format, Strategy = "ln@llm",
                OutDir = Path.Combine(root, name), Augmentation = aug,
                Train = new TrainOptions { MaxSteps = 2, BatchSize = 4, LogEvery = 1, Seed = 3, PrefetchBatches = prefetch },
            };
            var plain = FineTuning.Train(Job("plain", null, 0)).Result;
            var prefetched = FineTuning.Train(Job("prefetched", null, 2)).Result;
            var augmented = FineTuning.Train(Job("augmented", Augmentation.Blip with { MinScale = 0.2 }, 2)).Result;
            // Prefetching changes nothing but who prepares the batches; augmentation changes the pixels, so the loss.
            Assert.Equal(plain.LossCurve, prefetched.LossCurve);
            Assert.NotEqual(plain.LossCurve[0].Loss, augmented.LossCurve[0].Loss);
            var summary = JsonNode.Parse(File.ReadAllText(Path.Combine(root, "augmented", "train_summary.json")))!;
            Assert.Equal(0.2, summary["augmentation"]!["random_resized_crop_scale"]![0]!.GetValue<double>());
            Assert.NotNull(summary["data_wait_seconds"]);

            FineTuning.Train(Job("report", null, 2, DatasetFormats.IuXray));
            var report = JsonNode.Parse(File.ReadAllText(Path.Combine(root, "report", "train_summary.json")))!.AsObject();
            Assert.Equal("report", report["task"]!.GetValue<string>());
            Assert.True(report.ContainsKey("best_validation_bleu4"));
            Assert.False(report.ContainsKey("best_validation_acc"));
        }
        finally { Directory.Delete(root, true); }
    }
}
