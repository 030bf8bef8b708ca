namespace MedPeft.Experiments;

/// <summary>Per-strategy default peak learning rates. LN-tuning moves few parameters, each with a large effect per
/// unit of change spread over whole activations, and needs a far higher learning rate than full fine-tuning (PEFT's
/// own benchmark saw LN-tuning score 0 % at lr 1e-4). The values were chosen with a sweep on the embedded benchmark;
/// the evidence is in docs/learning-rates.md. For a combined strategy the first term decides.</summary>
public static class StrategyDefaults
{
    public static readonly IReadOnlyDictionary<string, double> LearningRates = new Dictionary<string, double>
    {
        ["full"] = 5e-4,
        ["ffn"] = 5e-4,
        ["attn"] = 5e-4,
        ["bias"] = 1e-2,
        ["ln"] = 3e-2,
        ["lora"] = 5e-3,   // r 8, alpha 32, dropout 0.1 on query/value (MILE's setting)
        ["ia3"] = 1e-2,     // key/value/output.dense (PEFT's BERT mapping = MILE's setting)
        ["prefix"] = 3e-3,  // 10 virtual tokens, MLP 512 (MILE; Li & Liang 2021)
        ["ptuning"] = 3e-2, // P-tuning v2: 10 virtual tokens, no MLP
        ["prompt"] = 3e-2,  // 20 soft tokens (Lester et al. 2021), PEFT's RANDOM init
        ["ptuning-v1"] = 1e-3,   // P-tuning v1: 20 tokens through PEFT's MLP encoder; PEFT's P_Tuning.ipynb example (docs/learning-rates.md)
    };

    public static double LearningRate(string strategy)
    {
        var first = strategy.Split('+')[0].Split('@')[0].Trim();
        return LearningRates.TryGetValue(first, out var lr) ? lr
            : MedPeft.Tuning.TuningMethods.All.GetValueOrDefault(first)?.DefaultLearningRate ?? 1e-4;
    }
}
