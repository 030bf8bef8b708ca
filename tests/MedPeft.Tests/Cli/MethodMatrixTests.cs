using System.Diagnostics;
using System.Text.Json.Nodes;
using MedPeft.Data;
using MedPeft.Data.Synthetic;
using MedPeft.Evaluation;
using MedPeft.Experiments;
using MedPeft.Models;
using MedPeft.Training;
using MedPeft.Tuning;

namespace MedPeft.Tests.Cli;

/// <summary>The shared inputs of the matrix: a tiny random BLIP VQA folder and a tiny random LLaVA folder, with one
/// generated benchmark (SLAKE layout + its IU-Xray split), made once for the class.</summary>
public sealed class MatrixFixture : IDisposable
{
    public string Root { get; } = Directory.CreateTempSubdirectory("medpeft-matrix-").FullName;
    public string BlipModel { get; }
    public string LlavaModel { get; }
    public string Data { get; }

    public MatrixFixture()
    {
        var options = SyntheticBenchOptions.Quick with
        {
            TrainImages = 6, ValidationImages = 1, TestImages = 1, PretrainImages = 1, ReportTrain = 4, ReportVal = 1, ReportTest = 2,
        };
        (BlipModel, Data) = TinyBlipFolder.Create(Root, options, seed: 5);
        LlavaModel = LlavaJobsTests.TinyFolder(Root, textType: "llama", seed: 5);
    }

    public void Dispose() => Directory.Delete(Root, true);
}

/// <summary>The proof of issue 11: every registered tuning method (TuningMethods.All — a method registered later joins
/// by itself) × {BLIP VQA, BLIP report, LLaVA VQA, LLaVA report}: train a few steps through the library, answer the
/// test split with the trained model in memory (greedy and beam), then `medpeft eval` in a fresh process on what
/// train saved (model/, plus adapter/ when train_summary.json says the model is the base) must give the SAME
/// predictions and scores, exactly. A cell a method cannot support must refuse in one clear line (listed below).</summary>
public class MethodMatrixTests(MatrixFixture f) : IClassFixture<MatrixFixture>
{
    public static readonly string[] Cells = ["blip-vqa", "blip-report", "llava-vqa", "llava-report"];

    public static IEnumerable<object[]> Matrix() =>
        TuningMethods.All.Keys.SelectMany(m => Cells.Select(c => new object[] { m, c }));

    /// <summary>(method, cell) pairs that are refused, with a fragment of the one-line reason. Empty: every method
    /// supports every cell.</summary>
    static readonly Dictionary<(string, string), string> Refused = new();

    static readonly DecodingOverrides Greedy = new(NumBeams: 1, MaxNewTokens: 6);
    static readonly DecodingOverrides Beam = new(NumBeams: 3, MaxNewTokens: 6);

    [Theory]
    [MemberData(nameof(Matrix))]
    public void Train_save_and_reload_in_a_fresh_process_give_the_in_memory_predictions(string method, string cell)
    {
        var outDir = Path.Combine(f.Root, "runs", $"{method}-{cell}");
        bool llava = cell.StartsWith("llava"), report = cell.EndsWith("report");
        var model = llava ? f.LlavaModel : f.BlipModel;
        var data = report ? SyntheticBench.IuXrayRoot(f.Data) : f.Data;
        var format = report ? DatasetFormats.IuXray : "slake";
        var train = new TrainOptions { MaxSteps = 2, BatchSize = 4, Seed = 9 };

        IReadOnlyList<InMemoryTest> tests;
        try
        {
            tests = FineTuning.Train(new VqaTrainJob
            {
                ModelDir = model, DataDir = data, Format = format, Strategy = method, OutDir = outDir, Train = train,
                ValidationLimit = report ? 1 : 2, ScoreTest = [Greedy, Beam],
            }).Tests;
        }
        catch (MedPeftException e) when (Refused.ContainsKey((method, cell)))
        {
            Assert.Contains(Refused[(method, cell)], e.Message);
            Assert.DoesNotContain('\n', e.Message);
            return;
        }
        Assert.False(Refused.ContainsKey((method, cell)), $"{method} × {cell} is listed as refused but trained");
        Assert.Equal(2, tests.Count);

        var (trained, adapter) = TrainedOutputs.ForScoring(outDir);
        // Both decodings in fresh processes, side by side.
        var runs = tests.Select(t =>
        {
            var preds = Path.Combine(outDir, $"eval-beams{t.Decoding.NumBeams}.{(report ? "json" : "jsonl")}");
            List<string> args = ["eval", "--task", report ? "report" : "vqa", "--model", trained, "--data", data, "--format", format, "--split", "test",
                "--num-beams", $"{t.Decoding.NumBeams}", "--max-new-tokens", $"{t.Decoding.MaxNewTokens}", "--predictions", preds, "--json", "--threads", "1"];
            if (adapter is not null) args.AddRange(["--adapter", adapter]);
            return (Test: t, Preds: preds, Result: Task.Run(() => CliRunner.Run([.. args])));
        }).ToList();
        foreach (var (t, preds, pending) in runs)
        {
            var r = pending.Result;
            var context = $"{method} × {cell}, beams {t.Decoding.NumBeams}";
            Assert.True(r.ExitCode == 0, $"{context}: {r.StdErr}{r.StdOut}");
            var printed = JsonNode.Parse(r.StdOut)!;
            if (report)
            {
                var saved = ReportPairsFile.Load(preds);
                Assert.Equal(t.Reports!.Select(p => (p.Id, p.Candidate)), saved.Select(p => (p.Id, p.Candidate)));
                foreach (var (k, v) in ReportMetrics.Compute(t.Reports!).ToDictionary())
                    Assert.True(v == printed[k]!.GetValue<double>(), $"{context}: {k} {printed[k]} after reload, {v} in memory");
            }
            else
            {
                var saved = VqaPredictionsFile.Load(preds);
                Assert.Equal(t.Answers!.Select(p => (p.Id, p.Prediction)), saved.Select(p => (p.Id, p.Prediction)));
                var s = VqaScorer.Score(t.Answers!);
                Assert.Equal(s.OverallAccuracy, printed["overall_acc"]?.GetValue<double>() ?? double.NaN);
                Assert.Equal(s.Closed + s.Open, saved.Count);
            }
        }
    }
}
