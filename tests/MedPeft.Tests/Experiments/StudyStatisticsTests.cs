using System.Text.Json.Nodes;
using MedPeft.Experiments;

namespace MedPeft.Tests.Experiments;

public class StudyStatisticsTests
{
    static StoredRun Run(int index, string method, string strategy, long seed, long trainable, double overall, JsonObject? families = null)
    {
        var metrics = new JsonObject { ["test"] = new JsonObject { ["overall_acc"] = overall } };
        if (families is not null) metrics["families"] = families;
        var result = new JsonObject
        {
            ["method"] = method, ["strategy"] = strategy, ["model"] = "m", ["dataset"] = "d", ["task"] = "vqa", ["seed"] = seed,
            ["trainable"] = trainable, ["total"] = 10_000L, ["metrics"] = metrics, ["loss_curve"] = new JsonArray(),
        };
        return new StoredRun($"k{index}-{seed}", index, method, new JsonObject(), result, "w", 0);
    }

    static List<StoredRun> Runs(double[] full, double[] ln, double[] ffn, double[] attn, double[] random, double zeroShot = 40, long lnTrainable = 30) =>
    [
        Run(0, "zero-shot", "none", 1, 0, zeroShot),
        .. full.Select((v, i) => Run(1, "full", "full", i + 1, 10_000, v, new JsonObject { ["Organ"] = v + 1, ["Size"] = v - 1 })),
        .. ln.Select((v, i) => Run(2, "ln", "ln", i + 1, lnTrainable, v)),
        .. ffn.Select((v, i) => Run(3, "ffn", "ffn", i + 1, 4000, v)),
        .. attn.Select((v, i) => Run(4, "attn", "attn", i + 1, 4000, v)),
        .. random.Select((v, i) => Run(5, "full (random init)", "full", i + 1, 10_000, v)),
    ];

    [Fact]
    public void T_interval_uses_the_t_quantile_and_sample_std()
    {
        var i = Interval.Of([70, 72, 74]);
        double half = 4.303 * 2 / Math.Sqrt(3);
        Assert.Equal(72, i.Mean, 9);
        Assert.Equal(72 - half, i.Low, 9);
        Assert.Equal(72 + half, i.High, 9);
        Assert.False(Interval.Of([5]).Known);
        Assert.Equal(2.042, StudentT.Quantile975(30));
        Assert.InRange(StudentT.Quantile975(60), 1.999, 2.001);   // tables: 2.000
        Assert.InRange(StudentT.Quantile975(1000), 1.961, 1.963);
        Assert.Equal("−2.0 [−4.5, +0.5]", new Interval(-2, -4.5, 0.5, 3).FormatSigned("F1"));
    }

    [Fact]
    public void Differences_to_full_are_paired_by_seed_and_zero_shot_is_compared_with_every_seed()
    {
        var stats = StudyStatistics.Compute(Runs(full: [70, 80, 75], ln: [69, 79, 74], ffn: [60, 61, 62], attn: [71, 81, 76], random: [40, 41, 42]));
        var ln = stats.Single(s => s.Method == "ln");
        // Paired: every seed is exactly 1 below full, so the interval has no width although full varies by 10 points.
        Assert.Equal((-1.0, -1.0, -1.0, 3), (ln.VersusFull!.Mean, ln.VersusFull.Low, ln.VersusFull.High, ln.VersusFull.N));
        var zs = stats.Single(s => s.Method == "zero-shot");
        Assert.Equal(3, zs.VersusFull!.N);
        Assert.Equal(40 - 75, zs.VersusFull.Mean, 9);
        Assert.Null(stats.Single(s => s.Method == "full").VersusFull);
        var full = stats.Single(s => s.Method == "full");
        Assert.Equal(["Organ", "Size"], full.Families.Keys);
        Assert.Equal(76, full.Families["Organ"].Mean, 9);

        var md = StudyStatistics.Markdown(stats);
        Assert.Contains("| ln | 3 | 74.0 ± 12.4 | −1.0 [−1.0, −1.0] | – | – |", md);
        var json = StudyStatistics.ToJson(ln);
        Assert.Equal(-1.0, json["difference_to_full"]!["mean"]!.GetValue<double>());
        Assert.Equal("overall_acc", json["metric"]!.GetValue<string>());
    }

    [Fact]
    public void Claims_are_judged_by_their_interval_against_the_threshold()
    {
        Assert.Equal(StudyClaims.Supported, StudyClaims.Judge(new Interval(-1, -2, 0, 3), -3));
        Assert.Equal(StudyClaims.NotSupported, StudyClaims.Judge(new Interval(-10, -12, -8, 3), -3));
        Assert.Equal(StudyClaims.Inconclusive, StudyClaims.Judge(new Interval(-3, -5, -1, 3), -3));
        Assert.Equal(StudyClaims.Inconclusive, StudyClaims.Judge(Interval.Of([1.0]), -3));
        Assert.Equal(StudyClaims.NotTested, StudyClaims.Judge(null, -3));

        // ln 1 below full on every seed at 0.3 % → supported; ln above ffn → supported; ln vs attn: attn is 1 above
        // on every seed → not supported; full vs random init far apart → supported; OOD and scaling not tested.
        var runs = Runs(full: [70, 80, 75], ln: [69, 79, 74], ffn: [60, 61, 62], attn: [70, 80, 75], random: [40, 41, 42]);
        var claims = StudyClaims.Evaluate(StudyStatistics.Compute(runs), runs).ToDictionary(c => c.Id);
        Assert.Equal(StudyClaims.Supported, claims["ln-near-full"].Verdict);
        Assert.Equal(StudyClaims.Supported, claims["ln-vs-ffn"].Verdict);
        Assert.Equal(StudyClaims.NotSupported, claims["ln-vs-attn"].Verdict);
        Assert.Equal(StudyClaims.Supported, claims["pretrained-vs-random"].Verdict);
        Assert.Equal(StudyClaims.NotTested, claims["ln-ood-drop"].Verdict);
        Assert.Equal(StudyClaims.NotTested, claims["ln-gap-scales"].Verdict);

        // The same gap with 1.5 % of the parameters is not "< 1 %"; one seed is inconclusive.
        var big = Runs(full: [70, 80, 75], ln: [69, 79, 74], ffn: [60, 61, 62], attn: [70, 80, 75], random: [40, 41, 42], lnTrainable: 150);
        Assert.Equal(StudyClaims.NotSupported, StudyClaims.Evaluate(StudyStatistics.Compute(big), big).Single(c => c.Id == "ln-near-full").Verdict);
        var one = Runs(full: [70], ln: [69], ffn: [60], attn: [70], random: [40]);
        Assert.All(StudyClaims.Evaluate(StudyStatistics.Compute(one), one).Where(c => c.Verdict != StudyClaims.NotTested),
            c => Assert.Equal(StudyClaims.Inconclusive, c.Verdict));

        var md = StudyClaims.Markdown(claims.Values);
        Assert.Contains("**supported**", md);
        Assert.Contains("| vqa | LN-tuning is at least as good as ATTN-tuning (with far fewer parameters) | ln − attn, overall_acc: −1.0 [−1.0, −1.0] | 0.0 | **not supported** |", md);
        Assert.Equal(6, StudyClaims.ToJson(claims.Values).Count);
    }

    [Fact]
    public void Built_in_grid_runs_three_seeds_for_the_core_methods_and_one_for_the_others()
    {
        var runs = StudyPlan.Expand(StudySpec.Embedded(quick: false, tasks: ["vqa"])).Runs;
        var seeds = runs.GroupBy(r => r.Method).ToDictionary(g => g.Key, g => g.Select(r => r.Seed).ToList());
        foreach (var core in new[] { "full", "ln", "ffn", "attn", "lora", "full (random init)" }) Assert.Equal([42L, 43, 44], seeds[core]);
        Assert.Equal([42L], seeds["zero-shot"]);
        Assert.Equal([42L], seeds["ia3"]);
        Assert.All(StudyPlan.Expand(StudySpec.Embedded(quick: true)).Runs, r => Assert.Equal(42, r.Seed));   // --quick: one seed (CI)
        Assert.Equal(2, StudyPlan.Expand(StudySpec.Embedded(quick: true, tasks: ["vqa"], seeds: 2)).Runs.Count(r => r.Method == "ln"));
        Assert.Throws<MedPeftException>(() => StudySpec.Embedded(quick: true, seeds: 0));
    }

    [Fact]
    public void Reproducibility_evidence_names_the_first_stage_that_differs_and_every_changed_number()
    {
        var a = new JsonObject
        {
            ["benchmark_sha256"] = "b1", ["pretrained_sha256"] = "p1",
            ["runs"] = new JsonObject { ["vqa · ln · seed 42"] = new JsonObject { ["overall_acc"] = 53.4, ["final_loss"] = 1.25 } },
        };
        Assert.Empty(ReproducibilityEvidence.Differences(a, a.DeepClone().AsObject()));
        var b = a.DeepClone().AsObject();
        b["pretrained_sha256"] = "p2";
        b["runs"]!["vqa · ln · seed 42"]!["overall_acc"] = 53.400000000000006;
        b["runs"]!["vqa · full · seed 42"] = new JsonObject();
        var d = ReproducibilityEvidence.Differences(a, b);
        Assert.StartsWith("pretrained weights differ", d[0]);
        Assert.Contains("vqa · ln · seed 42 overall_acc: 53.4 in the file, 53.400000000000006 here", d);
        Assert.Equal(2, d.Count);   // a run the file does not list is not checked
        b.Remove("runs");
        b["runs"] = new JsonObject();
        Assert.Contains("vqa · ln · seed 42: not run here", ReproducibilityEvidence.Differences(a, b));
        a["pretrained_sha256"] = null;   // a partial record: not checked
        Assert.DoesNotContain(ReproducibilityEvidence.Differences(a, b), x => x.StartsWith("pretrained"));
    }
}
