using System.Globalization;
using System.Text.Json.Nodes;
using MedPeft.Data.Synthetic;
using MedPeft.Experiments;
using MedPeft.Models.Llava;
using MedPeft.Tuning;

namespace MedPeft.Tests.Cli;

/// <summary>`medpeft study FILE` with a LLaVA checkpoint folder on a SLAKE-format dataset: the study's real-dataset
/// path (VqaStudyTask → VqaJobs → LlavaJobs) end to end through the real CLI, and its resume.</summary>
public class StudyLlavaTests
{
    [Fact]
    public void Study_file_runs_a_llava_folder_zero_shot_ln_and_lora_then_skips_finished_runs()
    {
        var root = Directory.CreateTempSubdirectory("medpeft-study-llava-").FullName;
        try
        {
            var model = LlavaJobsTests.TinyFolder(root);
            var data = Path.Combine(root, "bench");
            SyntheticBench.EnsureGenerated(data, SyntheticBenchOptions.Quick with
            {
                TrainImages = 8, ValidationImages = 2, TestImages = 2, PretrainImages = 1, ReportTrain = 1, ReportVal = 1, ReportTest = 1,
            });
            var file = Path.Combine(root, "llava-study.yaml");
            File.WriteAllText(file, $"""
                name: llava-smoke
                models:
                  - name: tiny-llava
                    path: {model}
                datasets:
                  - name: SLAKE
                    format: slake
                    dir: {data}
                zero_shot: true
                strategies: [ln@llm, lora@llm]
                epochs: 1
                max_steps: 2
                batch_size: 2
                validation_limit: 4
                seeds: [5]
                """);
            var outDir = Path.Combine(root, "out");
            var r = CliRunner.Run("study", file, "--out", outDir, "--threads", "2");
            Assert.True(r.ExitCode == 0, r.StdErr + r.StdOut);
            Assert.Contains("3 run(s) ran here", r.StdOut);

            // Trainable counts as the strategy gives them on the same architecture.
            TrainableReport Expected(string spec)
            {
                using var m = new LlavaForConditionalGeneration(LlavaJobsTests.TinyConfig("mistral"));
                return TuningStrategy.Parse(spec, TowerLayout.Llava).Apply(m);
            }
            var ln = Expected("ln@llm");
            var lora = Expected("lora@llm");
            var expected = new Dictionary<string, long> { [StudyStrategy.ZeroShot] = 0, ["ln@llm"] = ln.Trainable, ["lora@llm"] = lora.Trainable };
            var totals = new Dictionary<string, long> { [StudyStrategy.ZeroShot] = ln.Total, ["ln@llm"] = ln.Total, ["lora@llm"] = lora.Total };   // LoRA adds its A/B
            Assert.Equal((2 * 2 + 1) * 32, ln.Trainable);   // RMSNorm weights of the 2-layer LLM + its final norm

            var rows = JsonNode.Parse(File.ReadAllText(Path.Combine(outDir, "results.json")))!.AsArray();
            var plan = StudyPlan.Expand(StudyFile.Load(file)).Runs;
            Assert.Equal(3, rows.Count);
            foreach (var row in rows)
            {
                var spec = row!["strategy_spec"]!.GetValue<string>();
                Assert.Equal(expected[spec], row["trainable"]!.GetValue<long>());
                Assert.Equal(totals[spec], row["total"]!.GetValue<long>());
                Assert.Equal("tiny-llava", row["model"]!.GetValue<string>());
                // The recorded accuracy is what the saved outputs score when rescored on their own (zero-shot: the
                // folder; a run: model/ + adapter/ as its train_summary.json says), with LLaVA's default decoding.
                var runDir = StudyRunner.RunDir(outDir, plan.Single(p => p.Strategy.Spec == spec));
                var (scored, adapter) = spec == StudyStrategy.ZeroShot ? (model, null) : TrainedOutputs.ForScoring(runDir);
                var rescored = FineTuning.Evaluate(new EvalJob { ModelDir = scored, AdapterDir = adapter, DataDir = data, Format = "slake" }).Vqa!;
                Assert.Equal(rescored.OverallAccuracy, row["overall_acc"]!.GetValue<double>());
                Assert.Equal(rescored.ClosedAccuracy, row["closed_acc"]?.GetValue<double>() ?? double.NaN);
                if (spec != StudyStrategy.ZeroShot) Assert.Equal(2, row["steps"]!.GetValue<int>());
            }

            // The CSV table: one row per run (one seed each), same counts, finite overall accuracy.
            var csv = File.ReadAllLines(Path.Combine(outDir, "table-vqa.csv"));
            var head = csv[0].Split(',');
            int Col(string name) => Array.IndexOf(head, name) is var i and >= 0 ? i : throw new Xunit.Sdk.XunitException($"no column {name} in {csv[0]}");
            var cells = csv.Skip(1).Select(l => l.Split(',')).ToList();
            Assert.Equal(3, cells.Count);
            foreach (var c in cells)
            {
                var method = c[Col("method")];
                var spec = rows.Single(x => x!["strategy"]!.GetValue<string>() == method)!["strategy_spec"]!.GetValue<string>();
                Assert.Equal(expected[spec], long.Parse(c[Col("trainable")], CultureInfo.InvariantCulture));
                Assert.Equal("1", c[Col("seeds")]);
                Assert.True(double.IsFinite(double.Parse(c[Col("test_overall_acc_mean")], CultureInfo.InvariantCulture)));
            }

            // Rerunning the same command records nothing new.
            int finished;
            using (var store = new ResultsStore(Path.Combine(outDir, ResultsStore.FileName)))
                finished = store.Events().Count(e => e.Kind == "finished");
            Assert.Equal(3, finished);
            var json = File.ReadAllText(Path.Combine(outDir, "results.json"));
            var again = CliRunner.Run("study", file, "--out", outDir, "--threads", "2");
            Assert.True(again.ExitCode == 0, again.StdErr + again.StdOut);
            Assert.Contains("0 run(s) ran here, 3 already recorded", again.StdOut);
            using (var store = new ResultsStore(Path.Combine(outDir, ResultsStore.FileName)))
            {
                Assert.Equal(3, store.Events().Count(e => e.Kind == "finished"));
                Assert.Equal(3, store.Finished().Count);
            }
            Assert.Equal(json, File.ReadAllText(Path.Combine(outDir, "results.json")));
        }
        finally { Directory.Delete(root, true); }
    }
}
