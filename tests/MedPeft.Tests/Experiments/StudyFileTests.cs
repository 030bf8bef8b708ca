using MedPeft.Experiments;
using MedPeft.Tuning;

namespace MedPeft.Tests.Experiments;

public class StudyFileTests
{
    const string Yaml = """
        name: demo
        models:
          - embedded
          - {name: miss, preset: miss-base, path: /ckpt/miss}
        datasets:
          - format: embedded
            size: quick
          - name: slake-en
            format: slake
            dir: /data/slake
            extra_tests:
              - {format: vqa-rad, dir: /data/vqa-rad}
        strategies:
          - ln
          - spec: lora
            options: {r: 4, alpha: 16, targets: [query, value]}
            learning_rate: [1e-3, auto]
        zero_shot: true
        epochs: 2
        seeds: [1, 2]
        """;

    [Fact]
    public void Yaml_study_parses_models_datasets_strategies_options_and_seeds()
    {
        var spec = StudyFile.Parse(Yaml, "demo.yaml");
        Assert.Equal("demo", spec.Name);
        Assert.Equal([StudyModel.Embedded, "miss-base"], spec.Models.Select(m => m.Preset));
        Assert.Equal("/ckpt/miss", spec.Models[1].Path);
        Assert.Equal("vqa-rad", spec.Datasets[1].ExtraTests.Single().Format);
        Assert.Equal(["zero-shot", "ln", "lora (r 4, alpha 16, targets query,value)"], spec.Strategies.Select(s => s.Label));
        var lora = spec.Strategies[2];
        Assert.Equal(1e-3, lora.LearningRates[0]);
        Assert.True(double.IsNaN(lora.LearningRates[1]!.Value));
        var config = ((LoraMethod)lora.Methods(TowerLayout.Blip)!["lora"]).Config!;
        Assert.Equal((4, 16.0), (config.R, config.LoraAlpha));
        Assert.Equal(["query", "value"], config.TargetModules);
        Assert.Equal([1L, 2L], spec.Training.Seeds);
        Assert.Equal(2, spec.Training.Epochs);

        // 2 datasets × 2 models × (zero-shot once + ln × 2 seeds + lora × 2 lrs × 2 seeds) = 2 × 2 × 7
        var plan = StudyPlan.Expand(spec);
        Assert.Equal(28, plan.Runs.Count);
        Assert.Equal(plan.Runs.Count, plan.Runs.Select(r => r.Key).Distinct().Count());
        Assert.Equal(Enumerable.Range(0, 28), plan.Runs.Select(r => r.Index));
    }

    [Fact]
    public void Json_study_is_read_too_and_gives_the_same_run_keys()
    {
        var json = """
            {"name": "demo", "models": ["embedded"], "datasets": [{"format": "embedded", "size": "quick"}],
             "strategies": ["ln", {"spec": "lora", "options": {"r": 4}}], "seeds": [7]}
            """;
        var yaml = """
            name: other-name
            models: [embedded]
            datasets: [{format: embedded, size: quick}]
            strategies: [ln, {spec: lora, options: {r: 4}}]
            seeds: 7
            """;
        var a = StudyPlan.Expand(StudyFile.Parse(json, "a.json")).Runs;
        var b = StudyPlan.Expand(StudyFile.Parse(yaml, "b.yaml")).Runs;
        Assert.Equal(a.Select(r => r.Key), b.Select(r => r.Key));   // the key is the configuration, not the file
        Assert.NotEqual(a[0].Key, a[1].Key);
    }

    [Fact]
    public void Run_key_changes_with_every_setting_that_changes_the_result()
    {
        StudyRun Run(string yaml) => StudyPlan.Expand(StudyFile.Parse("models: [embedded]\ndatasets: [{format: embedded}]\n" + yaml, "k.yaml")).Runs[0];
        var baseKey = Run("strategies: [ln]").Key;
        Assert.Equal(baseKey, Run("strategies: [ln]\nseeds: [42]\nepochs: 5").Key);   // explicit defaults
        foreach (var variant in new[] { "strategies: [ln]\nseeds: [43]", "strategies: [ln]\nepochs: 4", "strategies: [{spec: ln, learning_rate: 0.01}]",
                     "strategies: [{spec: ln, learning_rate: auto}]", "strategies: [ln@text]", "strategies: [ln]\nbatch_size: 16", "strategies: [ln]\nmax_steps: 9" })
            Assert.NotEqual(baseKey, Run(variant).Key);
    }

    [Theory]
    [InlineData("models: [embedded]\ndatasets: [{format: embedded}]\nstrategies: [lnn]", "bad.yaml:3: strategies[0]: --strategy \"lnn\": unknown tuning method")]
    [InlineData("models: [embedded]\ndatasets: [{format: embedded}]\nstrategies: [{spec: lora, options: {rank: 4}}]", "bad.yaml:3: strategies[0].options.rank: unknown option")]
    [InlineData("models: [embedded]\ndatasets: [{format: embedded}]\nstrategies: [{spec: lora, options: {r: four}}]", "bad.yaml:3: strategies[0].options.r: expected an integer, got \"four\"")]
    [InlineData("models: [embedded]\ndatasets: [{format: embedded}]\nstrategies: [{spec: ln, options: {r: 4}}]", "strategies[0].options.r: \"ln\" takes no options")]
    [InlineData("models: [{preset: miss-huge}]\ndatasets: [{format: embedded}]\nstrategies: [ln]", "bad.yaml:1: models[0].preset: unknown preset \"miss-huge\"")]
    [InlineData("models: [embedded]\ndatasets:\n  - format: slak\n    dir: x\nstrategies: [ln]", "bad.yaml:3: datasets[0].format: unknown dataset format \"slak\"")]
    [InlineData("models: [embedded]\ndatasets: [{format: slake}]\nstrategies: [ln]", "bad.yaml:2: datasets[0]: needs `dir:`")]
    [InlineData("models: [embedded]\ndatasets: [{format: embedded}]\nstrategies: [ln]\nepochs: 0", "bad.yaml:4: epochs: must be ≥ 1")]
    [InlineData("models: [embedded]\ndatasets: [{format: embedded}]\nstrategies: [ln]\nlearning_rate: -1", "bad.yaml:4: learning_rate: a learning rate must be positive")]
    [InlineData("models: [embedded]\ndatasets: [{format: embedded}]\nstrategies: [ln]\nseed: [1]", "bad.yaml:4: seed: unknown field")]
    [InlineData("datasets: [{format: embedded}]\nstrategies: [ln]", "bad.yaml:1: missing required field `models`")]
    [InlineData("models: [embedded\n", "bad.yaml:")]
    public void Bad_study_files_fail_with_one_line_naming_file_line_and_field(string yaml, string expected)
    {
        var e = Assert.Throws<MedPeftException>(() => StudyFile.Parse(yaml, "bad.yaml"));
        Assert.Contains(expected, e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void Built_in_grid_has_zero_shot_every_registered_method_and_random_init_for_vqa_and_report()
    {
        var plan = StudyPlan.Expand(StudySpec.Embedded(quick: true));
        Assert.Empty(plan.Skipped);
        var runs = plan.Runs;
        string[] methods = ["zero-shot", .. TuningMethods.All.Keys, "full (random init)"];
        Assert.Equal([.. methods, .. methods], runs.Select(r => r.Method));
        Assert.Equal([.. methods.Select(_ => ("vqa", "embedded-quick")), .. methods.Select(_ => ("report", "embedded-quick-report"))],
            runs.Select(r => (r.Dataset.Task, r.Dataset.Name)));
        Assert.All(runs, r => Assert.Equal("quick", r.Dataset.Dir));   // one benchmark, one pretrained model for both tasks
        Assert.All(runs.Where(r => !r.Strategy.IsZeroShot), r => Assert.Null(r.LearningRate));   // per-strategy defaults (StrategyDefaults)
        var sweep = StudyPlan.Expand(StudySpec.Embedded(quick: true, lrSweep: true)).Runs;
        Assert.All(sweep.Where(r => !r.Strategy.IsZeroShot), r => Assert.True(r.LrAuto));

        // --task restricts the grid; the VQA runs keep their keys (finished runs of an older grid are reused).
        var vqa = StudyPlan.Expand(StudySpec.Embedded(quick: true, tasks: ["vqa"])).Runs;
        Assert.Equal(runs.Where(r => r.Dataset.Task == "vqa").Select(r => r.Key), vqa.Select(r => r.Key));
        Assert.All(StudyPlan.Expand(StudySpec.Embedded(quick: false, tasks: ["report"])).Runs, r => Assert.Equal(("report", "embedded-report"), (r.Dataset.Task, r.Dataset.Name)));
    }

    [Fact]
    public void Paper_study_example_parses_and_plans_vqa_and_report_runs()
    {
        var path = Path.Combine(AppContext.BaseDirectory, "examples", "paper-study.yaml");
        var spec = StudyFile.Load(path);
        Assert.Equal(["miss-base", "llava-med-7b"], spec.Models.Select(m => m.Preset));
        var plan = StudyPlan.Expand(spec);
        var methods = spec.Strategies.Where(s => !s.IsZeroShot).Select(s => s.Spec.Split('@')[0]).ToHashSet();
        Assert.Equal(TuningMethods.All.Keys.ToHashSet(), methods);   // "all": every registered method
        Assert.Equal(["iu-xray", "slake", "vqa-rad"], plan.Runs.Select(r => r.Dataset.Format).Distinct().Order());
        Assert.All(plan.Runs.Where(r => r.Dataset.Format == "iu-xray"), r => Assert.Equal("report", r.Dataset.Task));
        Assert.Empty(plan.Skipped);
    }
}
