using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MedPeft.Tuning;

/// <summary>DoRA (Liu et al. 2024, "DoRA: Weight-Decomposed Low-Rank Adaptation") as PEFT 0.11.1 runs it for
/// nn.Linear (lora.Linear with use_dora, LoraLayer._apply_dora): LoRA plus a trained magnitude per output row,
/// <c>lora_magnitude_vector</c> (fp32, initialised to the row norms ‖W + s·B·A‖ = ‖W‖ since B starts at zero). With
/// m/‖W + s·B·A‖_row as the per-row scale c, the forward adds to the base output
/// <c>(c − 1) ⊙ (W x) + c ⊙ s·B(A x)</c>, x after LoRA's dropout, the norm detached from the graph (paper §4.3, as
/// PEFT). Merged: W ← c ⊙ (W + s·B·A), with c from the unmerged weight kept for unmerging.</summary>
public sealed class DoraLinear : LoraLinear
{
    public Parameter lora_magnitude_vector;
    // The norm the merge used (PEFT's _cache_store): unmerging needs it, as the merged weight's norm differs.
    readonly Tensor?[] _mergedNorm = new Tensor?[1];

    public DoraLinear(string name, Linear baseLayer, LoraConfig config) : base(nameof(DoraLinear), name, baseLayer, config)
    {
        using (torch.no_grad()) lora_magnitude_vector = new Parameter(WeightNorm(DeltaWeight()), requires_grad: true);
        register_parameter("lora_magnitude_vector", lora_magnitude_vector);
    }

    public override void SetTrainable(bool on)
    {
        base.SetTrainable(on);
        if (lora_magnitude_vector is not null) lora_magnitude_vector.requires_grad = on;
    }

    /// <summary>PEFT's _get_weight_norm: the L2 norm of each output row of W + ΔW (fp32, [out]).</summary>
    Tensor WeightNorm(Tensor delta) => torch.linalg.norm(base_layer.weight!.to(ScalarType.Float32) + delta, dims: [1]);

    public override Tensor forward(Tensor x)
    {
        var y = base_layer.call(x);
        if (Merged) return y;
        using var scope = torch.NewDisposeScope();
        var h = DropoutOf(x);
        var w = base_layer.weight!.to(ScalarType.Float32);
        Tensor norm;
        using (torch.no_grad()) norm = WeightNorm(torch.matmul(lora_B.weight!, lora_A.weight!) * Scaling);   // detached
        var scale = (lora_magnitude_vector / norm).view(1, -1);
        var dora = (scale - 1) * nn.functional.linear(h, w) + scale * lora_B.call(lora_A.call(h)) * Scaling;
        return (y + dora).to(y.dtype).MoveToOuterDisposeScope();
    }

    /// <summary>c ⊙ (W + ΔW) with c = m / ‖W + ΔW‖_row.</summary>
    public override Tensor MergedWeight()
    {
        using var _ = torch.no_grad();
        return MergedWeightWith(WeightNorm(DeltaWeight()));
    }

    public override void Merge()
    {
        if (Merged) return;
        using var _ = torch.no_grad();
        var w = base_layer.weight!;
        _mergedNorm[0] = WeightNorm(DeltaWeight()).DetachFromDisposeScope();
        w.copy_(MergedWeightWith(_mergedNorm[0]!));
        Merged = true;
    }

    Tensor MergedWeightWith(Tensor norm)
    {
        var w = base_layer.weight!;
        return ((lora_magnitude_vector / norm).view(-1, 1) * (w.to(ScalarType.Float32) + DeltaWeight())).to(w.dtype);
    }

    public override void Unmerge()
    {
        if (!Merged) return;
        using var _ = torch.no_grad();
        var w = base_layer.weight!;
        var norm = _mergedNorm[0]!;
        w.copy_((w.to(ScalarType.Float32) / (lora_magnitude_vector / norm).view(-1, 1) - DeltaWeight()).to(w.dtype));
        norm.Dispose();
        _mergedNorm[0] = null;
        Merged = false;
    }

    /// <summary>LoRA's keys plus <c>base_model.model.&lt;module&gt;.lora_magnitude_vector</c> (PEFT 0.11's ParameterDict
    /// entry with the adapter name left out).</summary>
    public override IEnumerable<(string Key, Tensor Tensor)> AdapterTensors() =>
        base.AdapterTensors().Append((PeftAdapters.Prefix + Name + ".lora_magnitude_vector", (Tensor)lora_magnitude_vector));

    protected override void DisposeAdapter()
    {
        base.DisposeAdapter();
        lora_magnitude_vector.Dispose();
        _mergedNorm[0]?.Dispose();
    }
}

/// <summary>"dora": LoRA's defaults, targets and towers with a magnitude vector per adapted Linear; saved as PEFT's LORA
/// with use_dora true; merges into the weights.</summary>
public sealed class DoraMethod(LoraConfig? config = null) : LoraMethod(config)
{
    public override string Name => "dora";
    public override string Description => "DoRA: LoRA (r 8, alpha 32, query/value) plus a trained magnitude per output row";
    protected override bool UseDora => true;
    /// <summary>LoRA's swept 5e-3 (Liu et al. train DoRA with LoRA's learning rates); not swept for DoRA here.</summary>
    public override double? DefaultLearningRate => 5e-3;
    protected override LoraMethod With(LoraConfig config) => new DoraMethod(config);
}
