using System.Text.Json.Nodes;

namespace MedPeft.Tests.Cli;

public class CliTests
{
    [Fact]
    public void Inspect_miss_base_ln_reports_the_papers_counts_as_json()
    {
        var r = CliRunner.Run("inspect", "--arch", "miss-base", "--strategy", "ln", "--json");
        Assert.True(r.ExitCode == 0, r.StdErr);
        var json = JsonNode.Parse(r.StdOut)!;
        Assert.Equal(361_478_972, json["total"]!.GetValue<long>());
        Assert.Equal(153_600, json["trainable"]!.GetValue<long>());
        Assert.Equal(38_400, json["towers"]!["vision"]!["trainable"]!.GetValue<long>());
    }

    [Theory]
    [InlineData("ffn", 170_007_552)]
    [InlineData("attn", 141_742_080)]
    [InlineData("ln@text", 115_200)]
    [InlineData("ia3@text", 184_320)]               // 2 towers × 12 layers × (4 key/value outputs × 768 + 2 × 768 + 3072 inputs)
    [InlineData("ptuning@text_decoder", 184_320)]   // 10 tokens × 12 layers × 2 × 768
    [InlineData("prompt", 15_360)]                  // 20 soft tokens × 768 before the question
    [InlineData("ptuning-v1", 1_787_136)]           // 20 × 768 + PEFT's MLP at width 768: 3 × (768 × 768 + 768)
    public void Inspect_counts_other_strategies(string strategy, long trainable) => InspectCounts("miss-base", strategy, trainable);

    [Theory]
    [InlineData("ln@llm", 266_240)]
    [InlineData("ln", 368_640)]
    [InlineData("lora@llm", 4_194_304)]
    [InlineData("ia3@llm", 614_400)]        // 32 × (4096 + 4096 + 11008)
    [InlineData("ptuning@llm", 2_621_440)]  // 10 × 32 × 2 × 4096
    [InlineData("prompt@llm", 81_920)]      // 20 × 4096
    [InlineData("ptuning-v1@llm", 50_425_856)]   // 20 × 4096 + 3 × (4096 × 4096 + 4096)
    public void Inspect_counts_llava_med_7b(string strategy, long trainable) => InspectCounts("llava-med-7b", strategy, trainable);

    static void InspectCounts(string arch, string strategy, long trainable)
    {
        var r = CliRunner.Run("inspect", "--arch", arch, "--strategy", strategy, "--json");
        Assert.True(r.ExitCode == 0, r.StdErr);
        Assert.Equal(trainable, JsonNode.Parse(r.StdOut)!["trainable"]!.GetValue<long>());
    }

    [Fact]
    public void Inspect_prints_a_table_without_json()
    {
        var r = CliRunner.Run("inspect", "--arch", "miss-base", "--strategy", "ln");
        Assert.Equal(0, r.ExitCode);
        Assert.Contains("153,600", r.StdOut);
        Assert.Contains("361,478,972", r.StdOut);
    }

    [Theory]
    [InlineData("inspect", "--arch", "miss-base", "--strategy", "lnn")]
    [InlineData("inspect", "--arch", "no-such-model", "--strategy", "ln")]
    [InlineData("study", "--device", "tpu")]
    public void Bad_values_are_a_one_line_error_with_exit_1(params string[] args)
    {
        var r = CliRunner.Run(args);
        Assert.Equal(1, r.ExitCode);
        Assert.StartsWith("medpeft: error: ", r.StdErr);
        Assert.Single(r.StdErr.Trim().Split('\n'));
    }

    [Theory]
    [InlineData("inspect")]
    [InlineData("study", "--no-such-option")]
    [InlineData("frobnicate")]
    public void Bad_arguments_are_a_one_line_error_with_exit_2(params string[] args)
    {
        var r = CliRunner.Run(args);
        Assert.Equal(2, r.ExitCode);
        Assert.Single(r.StdErr.Trim().Split('\n'));
        Assert.Contains("--help", r.StdErr);
    }

    [Theory]
    [InlineData("study")]
    [InlineData("train")]
    [InlineData("eval")]
    [InlineData("inspect")]
    [InlineData("score", "report")]
    [InlineData("data", "check")]
    public void Every_command_has_help(params string[] command)
    {
        var r = CliRunner.Run([.. command, "--help"]);
        Assert.Equal(0, r.ExitCode);
        Assert.Contains("Usage:", r.StdOut);
    }

    [Fact]
    public void Score_report_matches_the_metrics_fixture()
    {
        var file = Fixtures.Path("metrics", "report_metrics_public.json");
        var r = CliRunner.Run("score", "report", file, "--json");
        Assert.True(r.ExitCode == 0, r.StdErr);
        var expected = JsonNode.Parse(File.ReadAllText(file))!["scores"]!;
        var actual = JsonNode.Parse(r.StdOut)!;
        foreach (var key in new[] { "BLEU_1", "BLEU_2", "BLEU_3", "BLEU_4", "ROUGE_L", "CIDEr" })
            Assert.Equal(expected[key]!.GetValue<double>(), actual[key]!.GetValue<double>(), 1e-9);
        Assert.Contains("METEOR not computed", r.StdErr);
    }

    [Fact]
    public void Score_vqa_reads_jsonl_and_names_the_bad_line()
    {
        var dir = Directory.CreateTempSubdirectory("medpeft-cli-").FullName;
        var good = Path.Combine(dir, "preds.jsonl");
        File.WriteAllLines(good, [
            """{"id":"1","question":"is there a nodule?","answer":"yes","prediction":"Yes"}""",
            """{"id":"2","question":"where?","answer":"left lung","prediction":"right lung","answer_type":"OPEN"}""",
        ]);
        var r = CliRunner.Run("score", "vqa", good, "--json");
        Assert.True(r.ExitCode == 0, r.StdErr);
        var json = JsonNode.Parse(r.StdOut)!;
        Assert.Equal(100, json["closed_acc"]!.GetValue<double>());
        Assert.Equal(0, json["open_acc"]!.GetValue<double>());
        Assert.Equal(50, json["overall_acc"]!.GetValue<double>());

        var bad = Path.Combine(dir, "bad.jsonl");
        File.WriteAllLines(bad, ["""{"id":"1","answer":"yes","prediction":"yes"}""", """{"id":"2","answer":"no"}"""]);
        r = CliRunner.Run("score", "vqa", bad);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("line 2", r.StdErr);
        Assert.Contains("prediction", r.StdErr);
    }

    [Fact]
    public void Data_check_reports_the_slake_sample()
    {
        var r = CliRunner.Run("data", "check", Fixtures.Path("datasets", "slake"), "--format", "slake", "--json");
        Assert.True(r.ExitCode == 0, r.StdErr + r.StdOut);
        var json = JsonNode.Parse(r.StdOut)!;
        Assert.Equal(6, json["train"]!["samples"]!.GetValue<int>());
        Assert.Equal(1, json["train"]!["skipped"]!["q_lang=zh"]!.GetValue<int>());
    }
}

public class ParityCliTests
{
    [Theory]
    [InlineData("blip_vqa")]
    [InlineData("blip_caption")]
    [InlineData("llava")]
    public void Parity_exits_0_on_the_model_fixtures(string name)
    {
        var dir = Fixtures.Path("hf", name);
        var r = CliRunner.Run("parity", dir, "--inputs", Path.Combine(dir, "inputs.safetensors"), "--expected", Path.Combine(dir, "expected.safetensors"), "--json");
        Assert.True(r.ExitCode == 0, r.StdOut + r.StdErr);
        var entries = System.Text.Json.Nodes.JsonNode.Parse(r.StdOut[..(r.StdOut.LastIndexOf(']') + 1)])!.AsArray();
        Assert.All(entries, e => Assert.True(e!["ok"]!.GetValue<bool>(), e.ToJsonString()));
    }

    [Theory]
    [InlineData("llava_lora")]
    [InlineData("llava_ln_tuning")]
    [InlineData("llava_ia3")]
    [InlineData("llava_dora")]
    public void Parity_exits_0_on_the_peft_adapter_fixtures(string adapter)
    {
        var dir = Fixtures.Path("hf", "llava");
        var r = CliRunner.Run("parity", dir, "--adapter", Fixtures.Path("hf", adapter), "--inputs", Path.Combine(dir, "inputs.safetensors"),
            "--expected", Fixtures.Path("hf", adapter, "expected.safetensors"));
        Assert.True(r.ExitCode == 0, r.StdOut + r.StdErr);
        Assert.Contains("within tolerance", r.StdOut);
    }

    [Fact]
    public void Merge_folds_the_peft_lora_adapter_into_llava_and_reproduces_logits_merged()
    {
        var outDir = Path.Combine(Directory.CreateTempSubdirectory("medpeft-merge-").FullName, "merged");
        var r = CliRunner.Run("merge", Fixtures.Path("hf", "llava"), Fixtures.Path("hf", "llava_lora"), outDir);
        Assert.True(r.ExitCode == 0, r.StdErr);
        Assert.True(File.Exists(Path.Combine(outDir, "config.json")));
        var config = MedPeft.Models.Llava.LlavaConfig.Load(Path.Combine(outDir, "config.json"));
        using var model = new MedPeft.Models.Llava.LlavaForConditionalGeneration(config);
        MedPeft.Models.Checkpoint.LoadSafetensors(model, Path.Combine(outDir, "model.safetensors"));   // strict: no LoRA keys left
        model.eval();
        var x = Fixtures.Load("hf", "llava", "inputs.safetensors");
        var exp = Fixtures.Load("hf", "llava_lora", "expected.safetensors");
        using var noGrad = TorchSharp.torch.no_grad();
        var o = model.forward(new MedPeft.Models.Llava.LlavaInput(x["input_ids"], x["pixel_values"], x["attention_mask"], x["labels"]));
        var e = MedPeft.Experiments.Parity.Compare("logits_merged", exp["logits_merged"], o.Logits,
            o.MergedAttentionMask.to(TorchSharp.torch.ScalarType.Bool).unsqueeze(-1).expand(o.Logits.shape));
        Assert.True(e.Ok, $"max |diff| {e.MaxAbsDiff:E3}");
        Assert.True(MedPeft.Experiments.Parity.Compare("loss_merged", exp["loss_merged"], o.Loss!).Ok);
    }

    [Fact]
    public void Parity_exits_1_when_a_tensor_is_off()
    {
        var dir = Fixtures.Path("hf", "blip_vqa");
        var tmp = Directory.CreateTempSubdirectory("medpeft-parity-").FullName;
        var expected = MedPeft.Models.Checkpoint.ReadSafetensors(Path.Combine(dir, "expected.safetensors"));
        expected["loss"] = expected["loss"] + 0.01f;
        MedPeft.Models.Checkpoint.SaveSafetensors(expected.Select(kv => (kv.Key, kv.Value)), Path.Combine(tmp, "expected.safetensors"));
        var r = CliRunner.Run("parity", dir, "--inputs", Path.Combine(dir, "inputs.safetensors"), "--expected", Path.Combine(tmp, "expected.safetensors"));
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("1 of 49 tensors off", r.StdOut);
    }
}
