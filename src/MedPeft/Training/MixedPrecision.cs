using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MedPeft.Training;

/// <summary>fp32 master weights for a model whose weights are 16-bit (mixed-precision training without autocast,
/// which TorchSharp lacks): the model keeps its trainable parameters in the compute dtype, so the whole forward and
/// backward run in 16 bits; the optimizer owns an fp32 copy of each, receives the 16-bit gradients upcast (and
/// unscaled, for fp16), steps in fp32 and writes the rounded result back. fp32 parameters are their own masters (no
/// copy), so an fp32 model trains exactly as without this class. This is the one place where training converts
/// dtypes; the model code only upcasts where transformers does (RMSNorm, loss).</summary>
public sealed class MasterWeights : IDisposable
{
    readonly List<(Parameter Model, Parameter Master)> _pairs = [];
    readonly Dictionary<IntPtr, Parameter> _masterOf = [];

    public MasterWeights(IEnumerable<Parameter> trainable)
    {
        using var _ = torch.no_grad();
        foreach (var p in trainable)
        {
            if (_masterOf.ContainsKey(p.Handle)) continue;
            var master = Precision.Is16Bit(p.dtype)
                ? (Parameter)new Parameter(p.detach().to(ScalarType.Float32).clone(), requires_grad: true).DetachFromDisposeScope()
                : p;
            _pairs.Add((p, master));
            _masterOf[p.Handle] = master;
        }
    }

    /// <summary>True when any trainable parameter is 16-bit (a copy exists).</summary>
    public bool Mixed => _pairs.Any(x => !ReferenceEquals(x.Model, x.Master));

    public IReadOnlyList<Parameter> Masters => _pairs.Select(x => x.Master).ToList();

    /// <summary>The fp32 parameter the optimizer updates for model parameter <paramref name="p"/>.</summary>
    public Parameter MasterOf(Parameter p) => _masterOf[p.Handle];

    /// <summary>Moves the model's gradients onto the masters in fp32, divided by <paramref name="scale"/>; returns
    /// false when any is inf/NaN (a loss-scaled fp16 overflow: the step must be skipped). With scale 1 and no 16-bit
    /// parameter nothing is touched and nothing is checked.</summary>
    public bool GradientsToMasters(double scale, bool checkFinite)
    {
        using var scope = torch.NewDisposeScope();
        var finite = new List<Tensor>();
        using (torch.no_grad())
        {
            foreach (var (model, master) in _pairs)
            {
                var g = model.grad;
                if (g is null) continue;
                if (!ReferenceEquals(model, master))
                {
                    var g32 = g.to(ScalarType.Float32);
                    if (scale != 1) g32 = g32.div_(scale);
                    master.grad = g32;
                    model.grad = null;   // the 16-bit gradient is not needed any more
                    g = master.grad!;
                }
                else if (scale != 1) g.div_(scale);
                if (checkFinite) finite.Add(g.isfinite().all());
            }
        }
        return finite.Count == 0 || torch.stack(finite).all().item<bool>();
    }

    /// <summary>Writes the updated masters into the model's 16-bit parameters.</summary>
    public void MastersToModel()
    {
        using var _ = torch.no_grad();
        foreach (var (model, master) in _pairs)
            if (!ReferenceEquals(model, master)) model.copy_(master);
    }

    /// <summary>Drops every gradient (model and master), e.g. after a skipped step.</summary>
    public void ClearGradients()
    {
        foreach (var (model, master) in _pairs) { model.grad = null; if (!ReferenceEquals(model, master)) master.grad = null; }
    }

    public void Dispose()
    {
        foreach (var (model, master) in _pairs) if (!ReferenceEquals(model, master)) master.Dispose();
        _pairs.Clear();
        _masterOf.Clear();
    }
}

/// <summary>Dynamic loss scaling for fp16 training with PyTorch's GradScaler defaults: the loss is multiplied by
/// <see cref="Scale"/> (init 2^16) before backward so small fp16 gradients do not flush to zero; a step whose unscaled
/// gradients hold inf/NaN is skipped and the scale halved; after 2000 good steps in a row it doubles.</summary>
public sealed class LossScaler
{
    public double Scale { get; private set; }
    public double GrowthFactor { get; init; } = 2.0;
    public double BackoffFactor { get; init; } = 0.5;
    public int GrowthInterval { get; init; } = 2000;
    public int SkippedSteps { get; private set; }
    int _goodSteps;

    public LossScaler(double initScale = 65536.0) { Scale = initScale; }

    /// <summary>Records one optimizer step's outcome (GradScaler.update).</summary>
    public void Update(bool finite)
    {
        if (!finite) { Scale *= BackoffFactor; _goodSteps = 0; SkippedSteps++; return; }
        if (++_goodSteps == GrowthInterval) { Scale *= GrowthFactor; _goodSteps = 0; }
    }
}
