using MedPeft.Experiments;
using MedPeft.Models;
using MedPeft.Models.Llava;
using MedPeft.Tuning;
using TorchSharp;
using static TorchSharp.torch;
using static MedPeft.Tests.Tuning.FixtureModels;

namespace MedPeft.Tests.Experiments;

/// <summary>`medpeft parity --adapter` with soft-prompt adapters (PROMPT_TUNING, P_TUNING), whose output is N positions
/// longer than the plain model's: no fixture exists, so MedPeft saves the adapter and computes the expected tensors with
/// its normal forward (the adapter applied by the strategy, not loaded from the file).</summary>
public class PromptAdapterParityTests
{
    [Theory]
    [InlineData("prompt", 5)]
    [InlineData("ptuning-v1", 4)]
    public void Parity_compares_the_real_tokens_of_a_soft_prompt_adapter(string method, int n)
    {
        torch.manual_seed(41);
        var dir = Fixtures.Path("hf", "llava");
        var inputs = Path.Combine(dir, "inputs.safetensors");
        var x = Fixtures.Load("hf", "llava", "inputs.safetensors");
        var tmp = Directory.CreateTempSubdirectory("medpeft-prompt-parity-").FullName;
        try
        {
            var adapter = Path.Combine(tmp, "adapter");
            Tensor logits, loss; Tensor? grad = null;
            using (var model = LoadLlava())
            {
                ITuningMethod m = method == "prompt" ? new PromptTuningMethod(new PromptTuningConfig { NumVirtualTokens = n })
                    : new PTuningMethod(new PromptEncoderConfig { NumVirtualTokens = n, EncoderHiddenSize = 16 });
                var strategy = TuningStrategy.Parse(method, TowerLayout.Llava, new Dictionary<string, ITuningMethod> { [method] = m });
                strategy.Apply(model);
                var o = model.forward(new LlavaInput(x["input_ids"], x["pixel_values"], x["attention_mask"], x["labels"]));
                logits = o.Logits.detach().clone();
                loss = o.Loss!.detach().clone();
                if (method == "prompt")
                {
                    o.Loss.backward();
                    grad = PromptTuning.TowersOf(model).Single().Embedding.weight!.grad!.clone();
                }
                Assert.NotNull(MedPeft.Experiments.VqaJobs.SaveAdapter(model, strategy, adapter));
            }
            long merged = logits.shape[1] - n;

            List<ParityEntry> Check(Dictionary<string, Tensor> expected)
            {
                var path = Path.Combine(tmp, "expected.safetensors");
                Checkpoint.SaveSafetensors(expected.Select(kv => (kv.Key, kv.Value.contiguous())), path);
                return Parity.Run(dir, inputs, path, adapter);
            }

            // The real tokens' positions (what PEFT users slice: logits[:, N:]).
            var real = new Dictionary<string, Tensor> { ["logits_with_adapter"] = logits[.., n..], ["loss_with_adapter"] = loss };
            if (grad is not null) real["grad.prompt_embeddings"] = grad;
            var entries = Check(real);
            Assert.All(entries, e => Assert.True(e.Ok, $"{e.Name}: {e.MaxAbsDiff:E3} {e.Error}"));
            Assert.Equal(real.Count, entries.Count);

            // PEFT's raw N + L positions compare too.
            Assert.All(Check(new Dictionary<string, Tensor> { ["logits_with_adapter"] = logits }), e => Assert.True(e.Ok, $"{e.Name}: {e.MaxAbsDiff:E3} {e.Error}"));

            // Misaligned by N (the first L positions, virtual tokens included): must fail, so the check can fail.
            Assert.Equal(merged, logits[.., ..(int)merged].shape[1]);
            var wrong = Check(new Dictionary<string, Tensor> { ["logits_with_adapter"] = logits[.., ..(int)merged] }).Single();
            Assert.False(wrong.Ok, "positions shifted by the virtual tokens must not pass");
        }
        finally { Directory.Delete(tmp, true); }
    }

    [Fact]
    public void Parity_cli_accepts_a_prompt_adapter_with_real_token_logits()
    {
        torch.manual_seed(42);
        var dir = Fixtures.Path("hf", "llava");
        var x = Fixtures.Load("hf", "llava", "inputs.safetensors");
        var tmp = Directory.CreateTempSubdirectory("medpeft-prompt-parity-cli-").FullName;
        try
        {
            var adapter = Path.Combine(tmp, "adapter");
            using (var model = LoadLlava())
            {
                var strategy = TuningStrategy.Parse("prompt", TowerLayout.Llava);
                strategy.Apply(model);
                Tensor logits;
                using (torch.no_grad()) logits = model.forward(new LlavaInput(x["input_ids"], x["pixel_values"], x["attention_mask"], x["labels"])).Logits;
                MedPeft.Experiments.VqaJobs.SaveAdapter(model, strategy, adapter);
                Checkpoint.SaveSafetensors([("logits_with_adapter", logits[.., 20..].contiguous())], Path.Combine(tmp, "expected.safetensors"));
            }
            var r = MedPeft.Tests.Cli.CliRunner.Run("parity", dir, "--adapter", adapter, "--inputs", Path.Combine(dir, "inputs.safetensors"),
                "--expected", Path.Combine(tmp, "expected.safetensors"));
            Assert.True(r.ExitCode == 0, r.StdOut + r.StdErr);
            Assert.Contains("within tolerance", r.StdOut);
        }
        finally { Directory.Delete(tmp, true); }
    }
}
