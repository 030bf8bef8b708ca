using System.CommandLine;
using System.Text.Json;
using System.Text.Json.Nodes;
using MedPeft.Evaluation;
using MedPeft.Experiments;
using MedPeft.Models;
using MedPeft.Models.Blip;
using MedPeft.Training;
using MedPeft.Tuning;
using Spectre.Console;

namespace MedPeft.Cli;

static class Commands
{
    static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };

    public static IEnumerable<Command> All() => [Study(), Train(), Eval(), Inspect(), Score(), Data(), ParityCommand(), Bench(), Merge()];

    static Command Study()
    {
        var rt = new RuntimeOptions();
        var file = new Argument<string?>("FILE") { Description = "a study file (YAML or JSON, docs/study-files.md); none = the built-in grid on the embedded benchmark", Arity = ArgumentArity.ZeroOrOne };
        var quick = new Option<bool>("--quick") { Description = "built-in grid: the reduced benchmark (a few minutes on 2 cores)" };
        var @out = new Option<string?>("--out") { Description = "output folder: results.db (the store), tables, report.html, runs/ (default: study-NAME)" };
        var strategies = new Option<string[]>("--strategies") { Description = "built-in grid: strategies to compare (default: every registered method)", AllowMultipleArgumentsPerToken = true };
        var cache = new Option<string?>("--cache") { Description = "benchmark + pretrained-model cache (default: $MEDPEFT_CACHE or ~/.cache/medpeft)" };
        var epochs = new Option<int?>("--epochs") { Description = "built-in grid: fine-tuning epochs (default: the plan's)" };
        var lr = new Option<double?>("--lr") { Description = "built-in grid: one learning rate for every strategy (default: per-strategy defaults)" };
        var noScratch = new Option<bool>("--no-random-init") { Description = "built-in grid: skip the 'full (random init)' row" };
        var lrSweep = new Option<bool>("--lr-sweep") { Description = "pick each run's learning rate with a short range test (log grid around the strategy default); recorded with the run" };
        var runIndex = new Option<int?>("--run-index") { Description = "run only run N of the plan (one Slurm array task); no tables" };
        var collect = new Option<bool>("--collect") { Description = "run nothing: build the tables and report.html from the results store" };
        var emit = new Option<string[]>("--emit") { Description = "--emit slurm DIR: write a Slurm job-array script (one run per array task) and a collect job", Arity = new ArgumentArity(2, 2), AllowMultipleArgumentsPerToken = true };
        var list = new Option<bool>("--list") { Description = "print the plan (run index, key, done/todo, dataset, method, seed) and exit" };
        var evidence = new Option<string?>("--evidence") { Description = "with --quick --reproducible: also write the reproducibility evidence (every run's scores, benchmark and pretrained-weights digests, CPU) to this file — docs/reproducibility/quick-study-scores.json" };
        var coreSeeds = new Option<int?>("--seeds") { Description = $"built-in grid: fine-tuning seeds (--seed, --seed + 1, …) for the core methods {string.Join(", ", StudySpec.CoreMethods)} and the random-init row (default {StudySpec.DefaultCoreSeeds}; --quick 1); the others run one" };
        var tasks = new Option<string[]>("--task") { Description = "built-in grid: only these tasks (vqa, report; default: both)", AllowMultipleArgumentsPerToken = true };
        tasks.Validators.Add(v => { foreach (var t in v.GetValueOrDefault<string[]>() ?? []) if (t is not ("vqa" or "report")) v.AddError($"--task {t}: expected vqa or report"); });
        var c = new Command("study", "Run a study — every strategy on every model and dataset — into a crash-safe results store, then write paper-style tables (Markdown, CSV) and report.html. Restart to resume; several processes may share one --out.");
        // An optional positional argument would otherwise swallow a mistyped option as the file name.
        file.Validators.Add(a => { if (a.GetValueOrDefault<string?>() is { } v && v.StartsWith('-')) a.AddError($"Unrecognized command or argument '{v}'."); });
        rt.AddTo(c); c.Add(file);
        foreach (var o in new Option[] { quick, @out, strategies, cache, epochs, lr, noScratch, lrSweep, runIndex, collect, emit, list, tasks, coreSeeds, evidence }) c.Add(o);
        c.SetAction(r =>
        {
            var device = rt.Apply(r);
            var path = r.GetValue(file);
            StudySpec spec;
            if (path is not null)
            {
                foreach (var (o, name) in new (Option, string)[] { (quick, "--quick"), (strategies, "--strategies"), (epochs, "--epochs"), (lr, "--lr"), (noScratch, "--no-random-init"), (tasks, "--task"), (coreSeeds, "--seeds") })
                    if (r.GetResult(o) is { Implicit: false }) throw new MedPeftException($"{name} applies to the built-in grid; with a study file set it in {path}");
                spec = StudyFile.Load(path);
                if (r.GetValue(lrSweep))
                    spec = spec with { Strategies = spec.Strategies.Select(s => s.IsZeroShot ? s : s with { LearningRates = [double.NaN] }).ToList() };
            }
            else
            {
                var s = r.GetValue(strategies) is { Length: > 0 } given ? given : null;
                foreach (var one in s ?? []) TuningStrategy.Parse(one, TowerLayout.Blip);   // fail fast on a typo
                spec = StudySpec.Embedded(r.GetValue(quick), s, !r.GetValue(noScratch), r.GetValue(epochs), r.GetValue(lr), r.GetValue(rt.Seed), r.GetValue(lrSweep),
                    r.GetValue(tasks) is { Length: > 0 } only ? only : null, r.GetValue(coreSeeds));
            }
            if (r.GetValue(rt.Reproducible)) spec = spec with { Training = spec.Training with { Reproducible = true } };
            var outDir = r.GetValue(@out) ?? $"study-{spec.Name}";
            var plan = StudyPlan.Expand(spec);

            if (r.GetValue(emit) is { Length: 2 } e)
            {
                if (e[0] != "slurm") throw new MedPeftException($"--emit {e[0]}: only \"slurm\" is supported");
                if (path is null) throw new MedPeftException("--emit slurm needs a study FILE (the array tasks re-read it)");
                if (spec.Training.Reproducible) throw new MedPeftException("--emit slurm with --reproducible: not supported yet (the array tasks would run in the default mode)");
                var self = Environment.ProcessPath is { } pp && Path.GetFileNameWithoutExtension(pp) == "dotnet"
                    ? $"dotnet {Path.Combine(AppContext.BaseDirectory, "MedPeft.Cli.dll")}" : Environment.ProcessPath ?? "medpeft";
                var files = SlurmScript.Write(e[1], new SlurmScript.Options(path, outDir, plan.Runs.Count, self, CacheDir: r.GetValue(cache), Device: device));
                foreach (var f in files) Console.WriteLine($"wrote {f}");
                Console.WriteLine($"{plan.Runs.Count} runs; submit with: bash {Path.Combine(e[1], "submit.sh")}");
                return 0;
            }
            if (r.GetValue(list))
            {
                using var store = new ResultsStore(Path.Combine(outDir, ResultsStore.FileName));
                foreach (var run in plan.Runs)
                    Console.WriteLine($"{run.Index,4}  {run.Key}  {(store.IsDone(run.Key) ? "done" : "todo")}  {run.Dataset.Name}  {run.Method}  seed {run.Seed}");
                foreach (var sk in plan.Skipped) Console.WriteLine($"skipped: {sk}");
                return 0;
            }
            if (r.GetValue(collect))
            {
                using var store = new ResultsStore(Path.Combine(outDir, ResultsStore.FileName));
                var missing = plan.Runs.Where(x => !store.IsDone(x.Key)).Select(m => $"run {m.Index} ({m.Method}, {m.Dataset.Name}, seed {m.Seed}) not finished").ToList();
                return Finish(spec, outDir, store.Finished(), missing, null);
            }

            if (r.GetValue(evidence) is not null && (path is not null || !r.GetValue(quick) || !spec.Training.Reproducible))
                throw new MedPeftException($"--evidence is the record of `{ReproducibilityEvidence.Command}`: use it with the built-in grid, --quick and --reproducible");
            var options = new StudyRunOptions { OutDir = outDir, CacheDir = r.GetValue(cache) ?? StudyCache.DefaultDir(), Device = device, RunIndex = r.GetValue(runIndex) };
            Console.WriteLine($"study {spec.Name}: {plan.Runs.Count} runs → {Path.GetFullPath(outDir)}");
            foreach (var sk in plan.Skipped) Console.WriteLine($"skipped: {sk}");
            var summary = ConsoleUi.WithStudyProgress(ui => new StudyRunner(spec, options, ui).Run());
            if (options.RunIndex is not null)
            {
                if (summary.Failures.Count > 0) { Console.Error.WriteLine($"medpeft: {summary.Failures[0]}"); return 1; }
                var key = plan.Runs[options.RunIndex.Value].Key;
                if (!summary.Finished.Any(f => f.Key == key)) { Console.WriteLine($"run {options.RunIndex} is claimed by another live process; not run here"); return 0; }
                Console.WriteLine($"run {options.RunIndex} done ({(summary.RanHere == 1 ? "ran here" : "already recorded")})");
                return 0;
            }
            int code = Finish(spec, outDir, summary.Finished, summary.Failures,
                $"study finished in {summary.Seconds:F0} s: {summary.RanHere} run(s) ran here, {summary.Skipped} already recorded");
            if (r.GetValue(evidence) is { } evidenceFile && code == 0)
            {
                var results = JsonNode.Parse(File.ReadAllText(Path.Combine(outDir, "results.json")))!.AsArray();
                var record = ReproducibilityEvidence.Make(results, Path.Combine(options.CacheDir, EmbeddedStudy.BenchFolder("quick")));
                MedPeft.AtomicFile.WriteAllText(evidenceFile, record.ToJsonString(Indented) + "\n");
                Console.WriteLine($"reproducibility evidence: {Path.GetFullPath(evidenceFile)}");
            }
            return code;
        });
        return c;
    }

    /// <summary>Prints the tables and writes results.json, table-*.md/.csv and report.html; exit 1 if anything is missing.</summary>
    static int Finish(StudySpec spec, string outDir, IReadOnlyList<StoredRun> finished, IReadOnlyList<string> problems, string? headline)
    {
        var rows = ResultsTables.Aggregate(finished);
        foreach (var g in rows.GroupBy(x => (x.Task, x.Dataset)))
            ConsoleUi.StudyTable($"{g.Key.Task} · {g.Key.Dataset} ({(g.Key.Task == "report" ? "test, BLEU / ROUGE-L / CIDEr-D" : "test, accuracy %")})", g.ToList(),
                g.Key.Task);
        var stats = StudyStatistics.Compute(finished);
        if (stats.Any(s => s.Seeds.Count > 1)) Console.WriteLine(StudyStatistics.Markdown(stats));
        foreach (var claim in StudyClaims.Evaluate(stats, finished))
            Console.WriteLine($"claim [{claim.Task}] {claim.Statement}: {StudyClaims.Measured(claim)} → {claim.Verdict.ToUpperInvariant()}{(claim.Note.Length > 0 ? $" ({claim.Note})" : "")}");
        var files = ResultsTables.WriteAll(outDir, $"MedPeft study: {spec.Name}", finished);
        if (headline is not null) Console.WriteLine(headline);
        Console.WriteLine($"results in {Path.GetFullPath(outDir)}: {string.Join(", ", files.Select(Path.GetFileName))}, runs/ (log.jsonl + TensorBoard events per run)");
        foreach (var p in problems) Console.Error.WriteLine($"medpeft: {p}");
        return problems.Count == 0 ? 0 : 1;
    }

    static Command Train()
    {
        var rt = new RuntimeOptions();
        var model = new Option<string>("--model") { Description = "model folder (config.json, model.safetensors, vocab.txt)", Required = true };
        var data = new Option<string>("--data") { Description = "dataset folder", Required = true };
        var format = new Option<string>("--format") { Description = "dataset format (slake, vqa-rad, pathvqa; report task: iu-xray, mimic-cxr)", DefaultValueFactory = _ => "slake" };
        var task = TaskOption();
        var strategy = new Option<string>("--strategy") { Description = $"method[@tower,…][+…], e.g. ln, ln@text, full@vision+ln@text, ln+lora@text; methods: {string.Join(", ", MedPeft.Tuning.TuningMethods.All.Keys)} (ptuning = P-tuning v2, ptuning-v1 = PEFT P_TUNING)", DefaultValueFactory = _ => "ln" };
        var @out = new Option<string>("--out") { Description = "output folder (model/, log.jsonl, train_summary.json)", Required = true };
        var epochs = new Option<int>("--epochs") { DefaultValueFactory = _ => 10 };
        var maxSteps = new Option<int?>("--max-steps") { Description = "stop after this many optimizer steps" };
        var batch = new Option<int>("--batch-size") { DefaultValueFactory = _ => 32 };
        var accum = new Option<int>("--grad-accum") { Description = "gradient accumulation steps", DefaultValueFactory = _ => 1 };
        var lr = new Option<double?>("--lr") { Description = "peak learning rate (default: the strategy's, see docs/learning-rates.md)" };
        var wd = new Option<double>("--weight-decay") { DefaultValueFactory = _ => 0.05 };
        var warmup = new Option<double>("--warmup-ratio") { DefaultValueFactory = _ => 0.05 };
        var clip = new Option<double>("--max-grad-norm") { DefaultValueFactory = _ => 1.0 };
        var evalEvery = new Option<int>("--eval-every") { Description = "validate every N steps (0 = every epoch)", DefaultValueFactory = _ => 0 };
        var norm = new Option<string>("--normalization") { Description = "pixel normalisation: blip, clip, imagenet, miss-raw, unit", DefaultValueFactory = _ => "blip" };
        var template = new Option<string?>("--template") { Description = $"LLaVA conversation template ({string.Join(", ", MedPeft.Data.ConversationTemplates.Named.Keys)}; default: the model's)" };
        var methodFlags = new MethodCliOptions();
        var aug = new AugmentOptions();
        var rep = new ReportCliOptions();
        var precision = new PrecisionOptions();
        var c = new Command("train", "Fine-tune a BLIP or LLaVA model folder with a tuning strategy: Med-VQA (--task vqa) or report generation (--task report: BLIP as BlipForConditionalGeneration, a VQA folder initialises it with text_encoder dropped; LLaVA as image + instruction → report).");
        rt.AddTo(c); foreach (var o in new Option[] { task, model, data, format, strategy, @out, epochs, maxSteps, batch, accum, lr, wd, warmup, clip, evalEvery, norm, template }) c.Add(o);
        methodFlags.AddTo(c); aug.AddTo(c); rep.AddTo(c); precision.AddTo(c, training: true);
        c.SetAction(r =>
        {
            var device = rt.Apply(r);
            var methodOptions = methodFlags.Get(r);
            var job = new VqaTrainJob
            {
                ModelDir = r.GetValue(model)!, DataDir = r.GetValue(data)!, Format = r.GetValue(format)!, Strategy = r.GetValue(strategy)!,
                OutDir = r.GetValue(@out)!, Device = device, LearningRate = r.GetValue(lr), Normalization = r.GetValue(norm)!,
                Augmentation = aug.Get(r),
                Template = r.GetValue(template), Log = line => Console.Error.WriteLine(line),
                MethodOptions = methodOptions, Task = r.GetValue(task),
                Train = new TrainOptions
                {
                    Epochs = r.GetValue(epochs), MaxSteps = r.GetValue(maxSteps), BatchSize = r.GetValue(batch), GradientAccumulation = r.GetValue(accum),
                    WeightDecay = r.GetValue(wd), WarmupRatio = r.GetValue(warmup), MaxGradNorm = r.GetValue(clip), EvalEvery = r.GetValue(evalEvery),
                    Seed = r.GetValue(rt.Seed), PrefetchBatches = r.GetValue(aug.Prefetch),
                    DType = r.GetValue(precision.DType)!, GradientCheckpointing = r.GetValue(precision.Checkpointing),
                },
            };
            if (FineTuning.TaskFor(job.Task, job.Format) == "report")
                job = job with
                {
                    ReportPrompt = r.GetValue(rep.Prompt) is { Length: > 0 } pr ? pr : null,   // LLaVA's instruction
                    ReportOptions = rep.Get(r, job.Format, batch: job.Train.BatchSize) with   // BLIP's captioning settings
                    {
                        Normalization = job.Normalization, Augmentation = job.Augmentation, PrefetchBatches = job.Train.PrefetchBatches,
                    },
                };
            var s = ConsoleUi.WithProgress((progress, _) => FineTuning.Train(job, progress(job.Strategy)));
            if (s.Load is { } load) Console.WriteLine(load.Describe());
            ConsoleUi.TrainableTable("model", job.Strategy, s.Trainable);
            var best = s.Result.BestValidation is not double v ? "n/a"
                : (s.Task == "report" ? $"BLEU-4 {v:F2}" : $"{v:F1}%") + $" at step {s.Result.BestStep}";
            Console.WriteLine($"trained {s.Result.Steps} steps in {s.Result.TrainSeconds:F0} s ({s.Result.StepsPerSecond:F2} steps/s, lr {s.LearningRate:G3}); " +
                              $"best validation {best}; peak memory {ConsoleUi.Bytes(s.Result.PeakMemoryBytes)}");
            Console.WriteLine($"model saved to {Path.Combine(s.OutDir, "model")}");
            return 0;
        });
        return c;
    }

    static Option<string?> TaskOption() => new("--task")
    {
        Description = "vqa (answers; BLIP: BlipForQuestionAnswering) or report (image → report; BLIP: BlipForConditionalGeneration); default: the dataset format's task",
        Validators = { v => { if (v.GetValueOrDefault<string?>() is not (null or "vqa" or "report")) v.AddError("--task must be vqa or report"); } },
    };

    static Command Eval()
    {
        var rt = new RuntimeOptions();
        var task = TaskOption();
        var model = new Option<string>("--model") { Description = "model folder", Required = true };
        var data = new Option<string?>("--data") { Description = "dataset folder (one test set; or use --test)" };
        var format = new Option<string>("--format") { DefaultValueFactory = _ => "slake" };
        var split = new Option<string>("--split") { DefaultValueFactory = _ => "test" };
        var tests = new Option<string[]>("--test") { Description = "a test set DIR:FORMAT[:SPLIT] (split default test); repeat for cross-dataset evaluation, each scored separately" };
        var beams = new Option<int?>("--num-beams") { Description = "beam width (default: generation_config.json, else VQA 3 (MISS) for BLIP / 1 for LLaVA; reports 3 (R2Gen))" };
        var maxNew = new Option<int?>("--max-new-tokens") { Description = "generated-token limit (default: generation_config.json, else VQA 9 (MISS) / 32 (LLaVA); reports 60 iu-xray / 100 mimic-cxr for BLIP)" };
        var minNew = new Option<int?>("--min-new-tokens") { Description = "minimum generated tokens (default: VQA 0; BLIP reports 5)" };
        var preds = new Option<string?>("--predictions") { Description = "write predictions (VQA: `score vqa` JSONL; reports: `score report` pairs JSON); with several test sets FILE.<set>.ext per set" };
        var json = new Option<bool>("--json") { Description = "print scores as JSON (with --test: an object keyed by test set)" };
        var norm = new Option<string>("--normalization") { DefaultValueFactory = _ => "blip" };
        var adapter = new Option<string?>("--adapter") { Description = "a PEFT adapter folder applied to the model first" };
        var template = new Option<string?>("--template") { Description = $"LLaVA conversation template ({string.Join(", ", MedPeft.Data.ConversationTemplates.Named.Keys)}; default: the model's)" };
        var rep = new ReportCliOptions();
        var precision = new PrecisionOptions();
        var c = new Command("eval", "Score a BLIP or LLaVA model folder on one or more test sets: Med-VQA (exact match closed/open/overall, open token recall) or reports (--task report: BLEU-1..4, ROUGE-L, CIDEr-D).");
        rt.AddTo(c); foreach (var o in new Option[] { task, model, data, format, split, tests, beams, maxNew, minNew, preds, json, norm, adapter, template }) c.Add(o);
        rep.AddTo(c); precision.AddTo(c, training: false);
        c.SetAction(r =>
        {
            var device = rt.Apply(r);
            var dtype = r.GetValue(precision.DType)!;
            bool keyed = r.GetValue(tests) is { Length: > 0 };
            var sets = new List<TestSet>();
            if (r.GetValue(data) is string d) sets.Add(new TestSet($"{MedPeft.Data.DatasetFormats.Get(r.GetValue(format)!).Name}:{MedPeft.Data.DatasetFormats.CanonicalSplit(r.GetValue(split)!)}", d, r.GetValue(format)!, r.GetValue(split)!));
            foreach (var spec in r.GetValue(tests) ?? []) sets.Add(TestSet.Parse(spec));
            if (sets.Count == 0) throw new MedPeftException("eval: give a test set with --data DIR [--format F --split S] or --test DIR:FORMAT[:SPLIT]");
            var unique = TestSet.Unique(sets);
            var modelDir = r.GetValue(model)!;
            var overrides = new DecodingOverrides(r.GetValue(beams), r.GetValue(maxNew), r.GetValue(minNew));
            Action<string> log = line => Console.Error.WriteLine(line);
            var results = new JsonObject();
            foreach (var set in unique)
            {
                string? predPath = r.GetValue(preds) is string p ? (unique.Count == 1 ? p : TestSet.PredictionsPath(p, set.Name)) : null;
                var setTask = FineTuning.TaskFor(r.GetValue(task), set.Format);
                var result = FineTuning.Evaluate(new EvalJob
                {
                    ModelDir = modelDir, AdapterDir = r.GetValue(adapter), DataDir = set.Dir, Format = set.Format, Split = set.Split, Task = setTask,
                    Decoding = overrides, Device = device, Normalization = r.GetValue(norm)!, Template = r.GetValue(template), Log = log, DType = dtype,
                    ReportPrompt = r.GetValue(rep.Prompt) is { Length: > 0 } pr ? pr : null,
                    ReportOptions = setTask == "report" ? rep.Get(r, set.Format, r.GetValue(beams), r.GetValue(maxNew), r.GetValue(minNew)) with { Normalization = r.GetValue(norm)! } : null,
                });
                JsonObject scoresJson;
                if (result.Reports is { } scores)
                {
                    var pairs = result.Pairs!;
                    if (result.Load is { DroppedTensors.Count: > 0 } load) Console.Error.WriteLine(load.Describe());
                    if (predPath is not null) ReportPairsFile.Save(predPath, pairs);
                    scoresJson = new JsonObject(scores.ToDictionary().Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)kv.Value)));
                    scoresJson["reports"] = pairs.Count;
                    if (!r.GetValue(json))
                    {
                        var t = new Table().Border(TableBorder.Rounded).Title(Markup.Escape($"{set.Name} ({set.Dir})"));
                        t.AddColumn(new TableColumn("reports") { Alignment = Justify.Right });
                        foreach (var k in scores.ToDictionary().Keys) t.AddColumn(new TableColumn(k) { Alignment = Justify.Right });
                        t.AddRow([pairs.Count.ToString(), .. scores.ToDictionary().Values.Select(v => v.ToString("F4"))]);
                        AnsiConsole.Write(t);
                    }
                }
                else
                {
                    if (predPath is not null) VqaPredictionsFile.Save(predPath, result.Answers!);
                    scoresJson = VqaJson(result.Vqa!);
                    if (!r.GetValue(json)) ConsoleUi.VqaScores(keyed ? $"{set.Name} ({set.Dir})" : $"{set.Format} {set.Split}", result.Vqa!);
                }
                if (keyed) { scoresJson["data"] = set.Dir; scoresJson["format"] = set.Format; scoresJson["split"] = set.Split; if (predPath is not null) scoresJson["predictions"] = predPath; }
                results[set.Name] = scoresJson;
            }
            if (r.GetValue(json)) Console.WriteLine((keyed ? results : results[unique[0].Name]!).ToJsonString(Indented));
            return 0;
        });
        return c;
    }

    static JsonObject VqaJson(VqaScores s)
    {
        static JsonNode? N(double x) => double.IsFinite(x) ? JsonValue.Create(x) : null;
        return new JsonObject
        {
            ["closed_acc"] = N(s.ClosedAccuracy), ["open_acc"] = N(s.OpenAccuracy), ["overall_acc"] = N(s.OverallAccuracy),
            ["open_token_recall"] = N(s.OpenTokenRecall), ["closed"] = s.Closed, ["open"] = s.Open,
        };
    }

    static void PrintVqa(string title, VqaScores s, bool json)
    {
        if (!json) { ConsoleUi.VqaScores(title, s); return; }
        Console.WriteLine(VqaJson(s).ToJsonString(Indented));
    }

    static Command Inspect()
    {
        var arch = new Option<string>("--arch") { Description = $"a preset ({string.Join(", ", Presets.Names)}) or a checkpoint folder with config.json", Required = true };
        var strategy = new Option<string>("--strategy") { Description = "e.g. ln, ln@text, ln@llm, ffn, attn, bias, full, full@vision+ln@text, lora@llm", DefaultValueFactory = _ => "ln" };
        var json = new Option<bool>("--json") { Description = "print {\"total\", \"trainable\", \"towers\"} as JSON" };
        var c = new Command("inspect", "Count what a strategy trains on an architecture, per tower — built on the meta device, no weights allocated.");
        c.Add(arch); c.Add(strategy); c.Add(json);
        c.SetAction(r =>
        {
            var name = r.GetValue(arch)!;
            var spec = r.GetValue(strategy)!;
            var (model, layout) = Presets.Build(name);
            using var _ = model;
            var report = TuningStrategy.Parse(spec, layout).Apply(model);
            if (r.GetValue(json)) Console.WriteLine(report.ToJson().ToJsonString(Indented));
            else ConsoleUi.TrainableTable(name, spec, report);
            return 0;
        });
        return c;
    }

    static Command Score()
    {
        var reportFile = new Argument<string>("FILE") { Description = "{\"pairs\":[{\"id\",\"candidate\",\"references\":[…]}]} or JSONL of those objects" };
        var reportJson = new Option<bool>("--json") { Description = "print the scores as JSON" };
        var meteorJar = new Option<string?>("--meteor-jar") { Description = "path to meteor-1.5.jar (needs java); without it METEOR is not computed" };
        var report = new Command("report", "BLEU-1..4, ROUGE-L, CIDEr-D exactly as pycocoevalcap computes them (+ METEOR with the jar).");
        report.Add(reportFile); report.Add(reportJson); report.Add(meteorJar);
        report.SetAction(r =>
        {
            var pairs = ReportPairsFile.Load(r.GetValue(reportFile)!);
            var jar = r.GetValue(meteorJar);
            var scores = ReportMetrics.Compute(pairs, jar is null ? null : new MeteorOptions(jar));
            var dict = scores.ToDictionary();
            if (r.GetValue(reportJson)) Console.WriteLine(JsonSerializer.Serialize(dict, Indented));
            else
            {
                var t = new Table().Border(TableBorder.Rounded).Title($"{pairs.Count} reports");
                foreach (var k in dict.Keys) t.AddColumn(new TableColumn(k) { Alignment = Justify.Right });
                t.AddRow(dict.Values.Select(v => v.ToString("F4")).ToArray());
                AnsiConsole.Write(t);
            }
            if (scores.MeteorNote is string note) Console.Error.WriteLine(note);
            return 0;
        });
        var vqaFile = new Argument<string>("FILE") { Description = "JSONL of {\"id\",\"question\",\"answer\",\"prediction\",\"answer_type\"?}" };
        var vqaJson = new Option<bool>("--json") { Description = "print the scores as JSON" };
        var vqa = new Command("vqa", "Closed / open / overall exact-match accuracy and open token recall of VQA predictions.");
        vqa.Add(vqaFile); vqa.Add(vqaJson);
        vqa.SetAction(r =>
        {
            var file = r.GetValue(vqaFile)!;
            PrintVqa(file, VqaScorer.Score(VqaPredictionsFile.Load(file)), r.GetValue(vqaJson));
            return 0;
        });
        var c = new Command("score", "Score outputs from any system.");
        c.Add(report); c.Add(vqa);
        return c;
    }

    static Command Data()
    {
        var dir = new Argument<string>("DIR") { Description = "dataset folder" };
        var format = new Option<string>("--format") { Description = $"one of {string.Join(", ", MedPeft.Data.DatasetFormats.Names)}", Required = true };
        var json = new Option<bool>("--json") { Description = "print the report as JSON keyed by split" };
        var allLangs = new Option<bool>("--all-languages") { Description = "SLAKE: keep every q_lang (default: English only)" };
        var check = new Command("check", "Validate a dataset folder before a long run: samples, images found/missing/undecodable, closed/open, skipped entries per split.");
        check.Add(dir); check.Add(format); check.Add(json); check.Add(allLangs);
        check.SetAction(r =>
        {
            var options = new MedPeft.Data.DatasetCheckOptions
            {
                Reader = MedPeft.Data.ReaderOptions.Default with { QuestionLanguage = r.GetValue(allLangs) ? null : "en" },
            };
            var result = MedPeft.Data.DatasetCheck.Run(r.GetValue(format)!, r.GetValue(dir)!, options);
            Console.WriteLine(r.GetValue(json) ? result.ToJson() : result.ToTable());
            return result.HasProblems ? 1 : 0;
        });
        var c = new Command("data", "Dataset tools.");
        c.Add(check);
        return c;
    }

    static Command ParityCommand()
    {
        var dir = new Argument<string>("MODEL_DIR") { Description = "model folder (config.json, model.safetensors)" };
        var inputs = new Option<string>("--inputs") { Description = "inputs.safetensors", Required = true };
        var expected = new Option<string>("--expected") { Description = "expected.safetensors made by the Python reference", Required = true };
        var json = new Option<bool>("--json") { Description = "print the per-tensor results as JSON" };
        var adapter = new Option<string?>("--adapter") { Description = "a PEFT adapter folder (LORA, LN_TUNING, IA3, PREFIX_TUNING, PROMPT_TUNING, P_TUNING; LLaVA) to apply first; soft-prompt adapters' logits_with_adapter are compared at the real tokens (the last L positions) unless the expected tensor has all N + L" };
        var c = new Command("parity", $"Recompute every tensor of a reference file and compare (|diff| ≤ {Parity.Atol:G} + {Parity.Rtol:G}·|expected|; integers exact). Exit 1 if any is off or missing.");
        var precision = new PrecisionOptions();
        c.Add(dir); c.Add(inputs); c.Add(expected); c.Add(json); c.Add(adapter); precision.AddTo(c, training: false);
        c.SetAction(r =>
        {
            var entries = Parity.Run(r.GetValue(dir)!, r.GetValue(inputs)!, r.GetValue(expected)!, r.GetValue(adapter), r.GetValue(precision.DType)!);
            if (r.GetValue(json))
                Console.WriteLine(new JsonArray(entries.Select(e => (JsonNode)new JsonObject
                {
                    ["name"] = e.Name, ["max_abs_diff"] = double.IsFinite(e.MaxAbsDiff) ? e.MaxAbsDiff : null, ["ok"] = e.Ok, ["error"] = e.Error,
                }).ToArray()).ToJsonString(Indented));
            else
            {
                var t = new Table().Border(TableBorder.Rounded);
                t.AddColumn("tensor"); t.AddColumn(new TableColumn("max |diff|") { Alignment = Justify.Right }); t.AddColumn("ok");
                foreach (var e in entries)
                    t.AddRow(Markup.Escape(e.Name), double.IsFinite(e.MaxAbsDiff) ? e.MaxAbsDiff.ToString("E2") : "–",
                        e.Ok ? "[green]ok[/]" : $"[red]{Markup.Escape(e.Error ?? "off")}[/]");
                AnsiConsole.Write(t);
            }
            int bad = entries.Count(e => !e.Ok);
            Console.WriteLine(bad == 0 ? $"parity: all {entries.Count} tensors within tolerance" : $"parity: {bad} of {entries.Count} tensors off or not computed");
            return bad == 0 ? 0 : 1;
        });
        return c;
    }

    static Command Bench()
    {
        var rt = new RuntimeOptions();
        var arch = new Option<string>("--arch") { Description = $"a preset ({string.Join(", ", Presets.Names)}) or a checkpoint folder", Required = true };
        var dtype = new Option<string>("--dtype") { Description = "bf16, fp16 or fp32 (weights are created in this dtype)", DefaultValueFactory = _ => "bf16" };
        var batch = new Option<int>("--batch") { DefaultValueFactory = _ => 1 };
        var tokens = new Option<int>("--tokens") { Description = "text tokens per row (LLaVA adds the image tokens)", DefaultValueFactory = _ => 32 };
        var forward = new Command("forward", "Build a preset with random weights in the given dtype and time one forward pass; prints time and peak memory.");
        rt.AddTo(forward); forward.Add(arch); forward.Add(dtype); forward.Add(batch); forward.Add(tokens);
        forward.SetAction(r =>
        {
            var device = TorchRuntime.ResolveDevice(rt.Apply(r));
            var b = ForwardBenchmark.Run(r.GetValue(arch)!, r.GetValue(dtype)!, r.GetValue(batch), r.GetValue(tokens), device, r.GetValue(rt.Seed));
            Console.WriteLine($"{b.Arch} {b.DType}: {ConsoleUi.Count(b.Parameters)} parameters; build {b.BuildSeconds:F1} s; forward (batch {b.Batch}, {b.TextTokens} text tokens) {b.ForwardSeconds:F1} s; " +
                              $"logits [{string.Join(", ", b.LogitsShape)}]; peak memory {b.PeakMemoryBytes / (1024.0 * 1024 * 1024):F2} GiB");
            return 0;
        });
        var mrt = new RuntimeOptions();
        var march = new Option<string>("--arch") { Description = $"a LLaVA preset ({string.Join(", ", Presets.Names.Where(n => n.StartsWith("llava")))}) or a folder with a LLaVA config.json (random weights)", Required = true };
        var mstrategy = new Option<string>("--strategy") { Description = "e.g. ln@llm, lora@llm, full", DefaultValueFactory = _ => "ln@llm" };
        var mprecision = new PrecisionOptions();
        var mbatch = new Option<int>("--batch") { DefaultValueFactory = _ => 1 };
        var mseq = new Option<int>("--seq-len") { Description = "text tokens per row (one is the <image>; the image's patches are added)", DefaultValueFactory = _ => 320 };
        var msteps = new Option<int>("--steps") { DefaultValueFactory = _ => 2 };
        var mjson = new Option<bool>("--json") { Description = "print the result as JSON" };
        var memory = new Command("train-memory", "Train a LLaVA preset with random weights for a few steps through `train`'s trainer (dtype, fp32 masters, gradient checkpointing); prints s/step and peak resident memory. Until `bench train` covers --dtype/--gradient-checkpointing.");
        mrt.AddTo(memory); memory.Add(march); memory.Add(mstrategy); mprecision.AddTo(memory, training: true); memory.Add(mbatch); memory.Add(mseq); memory.Add(msteps); memory.Add(mjson);
        memory.SetAction(r =>
        {
            var device = TorchRuntime.ResolveDevice(mrt.Apply(r));
            var m = TrainMemoryHarness.Run(r.GetValue(march)!, r.GetValue(mstrategy)!, r.GetValue(mprecision.DType)!, r.GetValue(mprecision.Checkpointing),
                r.GetValue(mbatch), r.GetValue(mseq), r.GetValue(msteps), device, r.GetValue(mrt.Seed));
            if (r.GetValue(mjson)) { Console.WriteLine(JsonSerializer.Serialize(m, Indented)); return 0; }
            Console.WriteLine($"{m.Arch} {m.Strategy} {m.DType}{(m.GradientCheckpointing ? " checkpointed" : "")}: {ConsoleUi.Count(m.Trainable)} of {ConsoleUi.Count(m.Total)} trainable; " +
                              $"batch {m.Batch} × {m.SeqLen} tokens; s/step {string.Join(", ", m.StepSeconds.Select(t => t.ToString("F1")))}; loss {m.FirstLoss:F3} → {m.LastLoss:F3}; " +
                              $"peak memory {m.PeakMemoryBytes / (1024.0 * 1024 * 1024):F2} GiB (after build {m.LoadedMemoryBytes / (1024.0 * 1024 * 1024):F2} GiB)");
            return 0;
        });
        var drt = new RuntimeOptions();
        var data = new Option<string?>("--data") { Description = "dataset folder (default: generated grayscale PNGs, see --source-size)" };
        var format = new Option<string>("--format") { Description = "its format (any: VQA or report)", DefaultValueFactory = _ => "slake" };
        var sourceSize = new Option<int>("--source-size") { Description = "without --data: side of the 64 generated PNGs", DefaultValueFactory = _ => 1024 };
        var split = new Option<string>("--split") { DefaultValueFactory = _ => "train" };
        var size = new Option<int>("--size") { Description = "model input size (pixels)", DefaultValueFactory = _ => 384 };
        var dbatch = new Option<int>("--batch") { DefaultValueFactory = _ => 32 };
        var steps = new Option<int>("--steps") { DefaultValueFactory = _ => 10 };
        var stepMs = new Option<double>("--step-ms") { Description = "length of the stand-in training step (matmuls on the training thread)", DefaultValueFactory = _ => 500 };
        var prefetch = new Option<int>("--prefetch") { Description = "prefetch depth", DefaultValueFactory = _ => 2 };
        var noAug = new Option<bool>("--no-augment") { Description = "plain resize (evaluation preprocessing) instead of crop + rotation" };
        var dataBench = new Command("data", "Image pipeline throughput: images/s decoded alone, and with a stand-in training step inline vs prefetched, with the data stall per step.");
        drt.AddTo(dataBench); foreach (var o in new Option[] { data, format, split, size, dbatch, steps, stepMs, prefetch, noAug, sourceSize }) dataBench.Add(o);
        dataBench.SetAction(r =>
        {
            drt.Apply(r);
            var fmt = r.GetValue(format)!;
            string? tmp = null;
            IReadOnlyList<string> paths;
            if (r.GetValue(data) is not string dir)
                paths = DataBenchmark.WriteSampleImages(tmp = Directory.CreateTempSubdirectory("medpeft-bench-data-").FullName, 64, r.GetValue(sourceSize));
            else paths = MedPeft.Data.DatasetFormats.TaskOf(fmt) == MedPeft.Data.DatasetTask.Report
                ? MedPeft.Data.DatasetFormats.ReadReports(fmt, dir, r.GetValue(split)!).SelectMany(x => x.ImagePaths).ToList()
                : MedPeft.Data.DatasetFormats.ReadVqa(fmt, dir, r.GetValue(split)!).Select(x => x.ImagePath).Distinct().ToList();
            var b = DataBenchmark.Run(paths, r.GetValue(size), r.GetValue(noAug) ? null : MedPeft.Data.Augmentation.Blip, r.GetValue(dbatch), r.GetValue(steps),
                r.GetValue(stepMs) / 1000, r.GetValue(prefetch), r.GetValue(drt.Seed));
            if (tmp is not null) Directory.Delete(tmp, true);
            Console.WriteLine($"{paths.Count} images, {b.Size}px, batch {b.Batch}, {b.Steps} steps, {(b.Augmented ? "random resized crop + rotation" : "plain resize")}");
            Console.WriteLine($"decode alone (1 thread):        {b.DecodeImagesPerSecond,8:F0} images/s");
            Console.WriteLine($"with a {b.ComputeSecondsPerStep * 1000:F0} ms step, inline:     {b.InlineImagesPerSecond,8:F0} images/s, data stall {b.InlineStallSecondsPerStep * 1000:F0} ms/step");
            Console.WriteLine($"with a {b.ComputeSecondsPerStep * 1000:F0} ms step, prefetch {b.Prefetch}: {b.PrefetchImagesPerSecond,8:F0} images/s, data stall {b.PrefetchStallSecondsPerStep * 1000:F0} ms/step");
            return 0;
        });
        var c = new Command("bench", "Speed and memory figures.");
        c.Add(forward); c.Add(dataBench); c.Add(memory);
        return c;
    }

    static Command Merge()
    {
        var baseDir = new Argument<string>("BASE") { Description = "base model folder" };
        var adapter = new Argument<string>("ADAPTER") { Description = "PEFT adapter folder (adapter_config.json + adapter_model.safetensors; LORA or LN_TUNING)" };
        var outDir = new Argument<string>("OUT") { Description = "output model folder" };
        var c = new Command("merge", "Fold an adapter into the base weights (merge_and_unload) and write a plain checkpoint folder.");
        c.Add(baseDir); c.Add(adapter); c.Add(outDir);
        c.SetAction(r =>
        {
            AdapterMerge.Run(r.GetValue(baseDir)!, r.GetValue(adapter)!, r.GetValue(outDir)!);
            Console.WriteLine($"merged model written to {r.GetValue(outDir)}");
            return 0;
        });
        return c;
    }
}
