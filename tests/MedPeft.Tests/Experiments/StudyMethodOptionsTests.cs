using System.CommandLine;
using System.Text.Json;
using MedPeft.Cli;
using MedPeft.Experiments;
using MedPeft.Tuning;

namespace MedPeft.Tests.Experiments;

/// <summary>Study-file strategy options and `medpeft train` flags go through one builder: the same settings give the
/// same method configs and instances, for every method that has options.</summary>
public class StudyMethodOptionsTests
{
    const string Yaml = """
        models: [embedded]
        datasets: [{format: embedded}]
        strategies:
          - spec: lora
            options: {r: 4, alpha: 16, dropout: 0.05, targets: [query, value, key], rslora: true}
          - spec: ia3@text
            options: {targets: [key, value, output.dense], feedforward: [output.dense]}
          - spec: prefix
            options: {num_virtual_tokens: 7, encoder_hidden_size: 64, prefix_projection: false}
          - spec: ptuning
            options: {num_virtual_tokens: 5}
          - spec: prompt
            options: {num_virtual_tokens: 8, prompt_init_text: "is there a lesion"}
          - spec: ptuning-v1@text_encoder
            options: {num_virtual_tokens: 6, encoder_hidden_size: 32, encoder_reparameterization_type: LSTM, encoder_num_layers: 1, encoder_dropout: 0.1}
        """;

    /// <summary>The equivalent `medpeft train` flags, per strategy of <see cref="Yaml"/>.</summary>
    static readonly string[][] Flags =
    [
        ["--lora-r", "4", "--lora-alpha", "16", "--lora-dropout", "0.05", "--lora-targets", "query", "value", "key", "--use-rslora", "true"],
        ["--ia3-targets", "key", "value", "output.dense", "--ia3-feedforward", "output.dense"],
        ["--num-virtual-tokens", "7", "--encoder-hidden-size", "64", "--prefix-projection", "false"],
        ["--num-virtual-tokens", "5"],
        ["--num-virtual-tokens", "8", "--prompt-init-text", "is there a lesion"],
        ["--num-virtual-tokens", "6", "--encoder-hidden-size", "32", "--encoder-reparameterization-type", "LSTM", "--encoder-num-layers", "1", "--encoder-dropout", "0.1"],
    ];

    static MethodOptions FromFlags(string[] args)
    {
        var flags = new MethodCliOptions();
        var c = new RootCommand();
        flags.AddTo(c);
        var r = c.Parse(args);
        Assert.Empty(r.Errors);
        return flags.Get(r);
    }

    static string Json(object? config) => JsonSerializer.Serialize(config);

    static object? ConfigOf(ITuningMethod m) => m switch
    {
        LoraMethod l => l.Config, Ia3Method i => i.Config, PrefixTuningMethod p => p.Config, PromptTuningMethod p => p.Config, PTuningMethod p => p.Config,
        _ => throw new InvalidOperationException(m.GetType().Name),
    };

    static int[] Encode(string text) => text.Split(' ').Select(w => w.Length).ToArray();   // any deterministic stand-in tokenizer

    [Fact]
    public void Study_options_give_the_same_method_configs_as_the_cli_flags()
    {
        var spec = StudyFile.Parse(Yaml, "opts.yaml");
        Assert.Equal(Flags.Length, spec.Strategies.Count);
        for (int i = 0; i < Flags.Length; i++)
        {
            var strategy = spec.Strategies[i];
            var study = strategy.ParseOptions();
            var cli = FromFlags(Flags[i]);
            var method = MethodOptions.MethodsOf(strategy.Spec).Single().Split('@')[0];
            // The config that method uses, from both sources (the CLI's --num-virtual-tokens also reaches the other
            // prompt methods; only the strategy's own method matters).
            object? Own(MethodOptions o) => method switch
            {
                "lora" => o.Lora, "ia3" => o.Ia3, "prefix" or "ptuning" => o.Prefix, "prompt" => o.Prompt, _ => o.PTuning,
            };
            Assert.NotNull(Own(study));
            Assert.Equal(Json(Own(cli)), Json(Own(study)));
            foreach (var layout in new[] { TowerLayout.Blip, TowerLayout.Llava })
            {
                var a = study.Methods(layout, Encode)![method];
                var b = cli.Methods(layout, Encode)![method];
                Assert.Equal(a.GetType(), b.GetType());
                Assert.Equal(Json(ConfigOf(b)), Json(ConfigOf(a)));
                Assert.Equal(b.Description, a.Description);
            }
        }

        // Spot checks that the values arrived (not only that both sides agree on defaults).
        var s = spec.Strategies;
        var lora = s[0].ParseOptions().Methods(TowerLayout.Blip, Encode)!["lora"] as LoraMethod;
        Assert.Equal((4, 16.0, 0.05, true), (lora!.Config!.R, lora.Config.LoraAlpha, lora.Config.LoraDropout, lora.Config.UseRslora));
        Assert.Equal(["query", "value", "key"], lora.Config.TargetModules);
        Assert.Equal(["output.dense"], s[1].ParseOptions().Ia3!.FeedforwardModules);
        Assert.Equal((7, 64, false), (s[2].ParseOptions().Prefix!.NumVirtualTokens, s[2].ParseOptions().Prefix!.EncoderHiddenSize, s[2].ParseOptions().Prefix!.PrefixProjection));
        Assert.False(((PrefixTuningMethod)s[3].Methods(TowerLayout.Blip)!["ptuning"]).Config.PrefixProjection);
        var prompt = (PromptTuningMethod)s[4].ParseOptions().Methods(TowerLayout.Blip, Encode)!["prompt"];
        Assert.Equal(("TEXT", "is there a lesion"), (prompt.Config.PromptTuningInit, prompt.Config.PromptTuningInitText));
        Assert.Equal([2L, 5, 1, 6], prompt.Config.InitTokenIds);
        Assert.Equal(new PromptEncoderConfig { NumVirtualTokens = 6, EncoderHiddenSize = 32, EncoderReparameterizationType = "LSTM", EncoderNumLayers = 1, EncoderDropout = 0.1 },
            s[5].ParseOptions().PTuning);
        Assert.Equal("ptuning-v1@text_encoder (num_virtual_tokens 6, encoder_hidden_size 32, encoder_reparameterization_type LSTM, encoder_num_layers 1, encoder_dropout 0.1)", s[5].Label);
    }

    [Fact]
    public void Cli_without_method_flags_keeps_every_registry_default()
    {
        var none = FromFlags([]);
        Assert.Null(none.Methods(TowerLayout.Blip, Encode));
    }

    [Theory]
    [InlineData("{spec: ptuning-v1, options: {prefix_projection: false}}", "bad.yaml:3: strategies[0].options.prefix_projection: unknown option (known for ptuning-v1: num_virtual_tokens, encoder_hidden_size, encoder_reparameterization_type, encoder_num_layers, encoder_dropout)")]
    [InlineData("{spec: ptuning-v1, options: {encoder_reparameterization_type: GRU}}", "bad.yaml:3: strategies[0].options: \"ptuning-v1\": encoder_reparameterization_type must be MLP or LSTM (got \"GRU\")")]
    [InlineData("{spec: ptuning-v1, options: {encoder_num_layers: 3}}", "bad.yaml:3: strategies[0].options: \"ptuning-v1\": encoder_num_layers 3 has no effect with the MLP encoder")]
    [InlineData("{spec: prompt, options: {num_virtual_tokens: many}}", "bad.yaml:3: strategies[0].options.num_virtual_tokens: expected an integer, got \"many\"")]
    [InlineData("{spec: prefix, options: {prefix_projection: maybe}}", "bad.yaml:3: strategies[0].options.prefix_projection: expected true or false")]
    [InlineData("{spec: lora+ia3, options: {targets: [key]}}", "bad.yaml:3: strategies[0].options: \"lora+ia3\": option \"targets\" is ambiguous between lora and ia3")]
    [InlineData("{spec: ia3, options: {r: 4}}", "bad.yaml:3: strategies[0].options.r: unknown option (known for ia3: targets, feedforward)")]
    public void Bad_strategy_options_name_the_file_strategy_and_option(string strategy, string expected)
    {
        var yaml = $"models: [embedded]\ndatasets: [{{format: embedded}}]\nstrategies: [{strategy}]";
        var e = Assert.Throws<MedPeftException>(() => StudyFile.Parse(yaml, "bad.yaml"));
        Assert.StartsWith(expected, e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void Cli_flag_values_are_checked_by_the_same_builder()
    {
        var e = Assert.Throws<MedPeftException>(() => FromFlags(["--encoder-reparameterization-type", "GRU"]));
        Assert.StartsWith("train: encoder_reparameterization_type must be MLP or LSTM", e.Message);
    }
}
