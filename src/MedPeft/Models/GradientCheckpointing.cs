using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MedPeft.Models;

/// <summary>A layer stack that can recompute its layers during backward (HF's <c>self.gradient_checkpointing</c>
/// flag on LlamaModel, CLIPEncoder, BlipEncoder and BlipTextEncoder).</summary>
public interface IGradientCheckpointing
{
    bool GradientCheckpointing { get; set; }
}

/// <summary>Activation (gradient) checkpointing as transformers' <c>gradient_checkpointing_enable()</c> sets it up:
/// while training, each transformer layer runs without keeping its activations, only its inputs; during backward the
/// layer's forward is run again with gradients and back-propagated. Peak memory then holds one layer's activations
/// plus every layer's input instead of every layer's activations, for about one extra forward of compute.
///
/// Built on a TorchSharp custom autograd function. Unlike torch.utils.checkpoint(use_reentrant=True) the layer's
/// trainable parameters are inputs of the node, so a layer whose input needs no gradient (LN-tuning's first layer)
/// still trains without HF's enable_input_require_grads workaround. The default generator's state is saved before the
/// forward and restored around the recomputation (then put back), so dropout draws the same masks (HF's
/// preserve_rng_state). Tensors the layer reads that are not passed as inputs must not need gradients.</summary>
public static class Checkpointing
{
    /// <summary>Sets the flag on every layer stack of <paramref name="model"/>; returns how many there are (0: the
    /// model has none, an error for a caller that asked for checkpointing).</summary>
    public static int Enable(nn.Module model, bool enable = true)
    {
        int n = 0;
        foreach (var (_, m) in model.named_modules())
            if (m is IGradientCheckpointing g) { g.GradientCheckpointing = enable; n++; }
        return n;
    }

    /// <summary>Turns checkpointing on, or fails in one line for a model without layer stacks.</summary>
    public static void Require(nn.Module model)
    {
        if (Enable(model) == 0)
            throw new MedPeftException($"--gradient-checkpointing: {model.GetType().Name} has no transformer layer stack to checkpoint");
    }

    /// <summary>Whether a stack checkpoints now: flag on, training mode, gradients enabled (generation and
    /// evaluation run normally, as in HF).</summary>
    public static bool Active(nn.Module stack) =>
        stack is IGradientCheckpointing { GradientCheckpointing: true } && stack.training && torch.is_grad_enabled();

    /// <summary>Layer recomputations done so far in this process (backward passes through a checkpoint); tests use it
    /// to see that checkpointing really ran.</summary>
    public static long Recomputations => Interlocked.Read(ref _recomputations);
    static long _recomputations;

    /// <summary>Prefix tuning's per-forward key/value table is computed once and shared by all layers, outside any
    /// layer's inputs: recomputing a layer cannot reach it, so that combination is refused.</summary>
    public static void RefusePrefix(IAttentionPrefix? prefix)
    {
        if (prefix is not null)
            throw new MedPeftException("--gradient-checkpointing with prefix tuning / P-tuning v2 (prefix, ptuning) is not supported yet; train those without it");
    }

    /// <summary>Runs <paramref name="forward"/> over <paramref name="inputs"/> (nulls allowed) keeping only the inputs
    /// for backward. <paramref name="layer"/>'s trainable parameters receive their gradients through the node.
    /// Random draws (dropout, LoRA dropout) are replayed: on CPU from the saved generator state; on CUDA, whose
    /// generator state TorchSharp 0.107 does not expose, by seeding the CUDA generator with a seed drawn here before
    /// the forward and again before the recomputation (the same masks both times, though not the masks an
    /// unchecked run would draw).</summary>
    public static Tensor Run(nn.Module layer, Func<Tensor?[], Tensor> forward, params Tensor?[] inputs)
    {
        var parameters = layer.parameters().Where(p => p.requires_grad).ToArray();
        bool cuda = inputs.Any(t => t is not null && t.device_type == DeviceType.CUDA);
        var call = new Call(forward, inputs.Length, parameters, cuda);
        var args = new object?[1 + inputs.Length + parameters.Length];
        args[0] = call;
        for (int i = 0; i < inputs.Length; i++) args[1 + i] = inputs[i];
        for (int i = 0; i < parameters.Length; i++) args[1 + inputs.Length + i] = parameters[i];
        return CheckpointFunction.apply(args!);
    }

    /// <summary>What one checkpointed call needs again in backward (the function type itself is a singleton).</summary>
    sealed class Call(Func<Tensor?[], Tensor> forward, int inputs, Parameter[] parameters, bool cuda)
    {
        public Func<Tensor?[], Tensor> Forward { get; } = forward;
        public int Inputs { get; } = inputs;
        public Parameter[] Parameters { get; } = parameters;
        public bool Cuda { get; } = cuda;
        public byte[]? RngState { get; set; }
        public long CudaSeed { get; set; }
        public bool[] RequiresGrad { get; set; } = [];
        public bool[] Present { get; set; } = [];
    }

    sealed class CheckpointFunction : autograd.SingleTensorFunction<CheckpointFunction>
    {
        public override string Name => "MedPeftCheckpoint";

        public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
        {
            var call = (Call)vars[0];
            var inputs = Enumerable.Range(0, call.Inputs).Select(i => vars[1 + i] as Tensor).ToArray();
            call.Present = inputs.Select(t => t is not null).ToArray();
            call.RequiresGrad = inputs.Select(t => t?.requires_grad ?? false).ToArray();
            using (var state = torch.get_rng_state()) call.RngState = state.data<byte>().ToArray();
            if (call.Cuda)
            {
                using var seed = torch.randint(long.MaxValue, [1], dtype: ScalarType.Int64);
                call.CudaSeed = seed.item<long>();
                torch.cuda.manual_seed_all(call.CudaSeed);
            }
            ctx.save_data("call", call);
            ctx.save_for_backward(inputs.Where(t => t is not null).Cast<Tensor>().ToList());
            return call.Forward(inputs);   // apply() runs this under no_grad: nothing inside is kept
        }

        public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor gradOutput)
        {
            var call = (Call)ctx.get_data("call");
            Interlocked.Increment(ref _recomputations);
            var saved = ctx.get_saved_variables();
            using var scope = torch.NewDisposeScope();
            var inputs = new Tensor?[call.Inputs];
            for (int i = 0, k = 0; i < call.Inputs; i++)
            {
                if (!call.Present[i]) continue;
                var t = saved[k++].detach();
                inputs[i] = call.RequiresGrad[i] ? t.requires_grad_(true) : t;
            }
            Tensor output;
            Tensor? resume = null;
            if (call.RngState is not null)
            {
                resume = torch.get_rng_state();
                torch.set_rng_state(torch.tensor(call.RngState));
            }
            if (call.Cuda) torch.cuda.manual_seed_all(call.CudaSeed);
            try
            {
                using (torch.enable_grad()) output = call.Forward(inputs);
            }
            finally { if (resume is not null) torch.set_rng_state(resume); }

            var targets = new List<Tensor>();
            var slots = new List<int>();   // position of each target in the returned gradient list
            for (int i = 0; i < call.Inputs; i++)
                if (inputs[i] is { requires_grad: true } t) { targets.Add(t); slots.Add(1 + i); }
            for (int j = 0; j < call.Parameters.Length; j++) { targets.Add(call.Parameters[j]); slots.Add(1 + call.Inputs + j); }
            var result = new Tensor?[1 + call.Inputs + call.Parameters.Length];
            if (output.requires_grad && targets.Count > 0)
            {
                var grads = torch.autograd.grad([output], targets, [gradOutput], allow_unused: true);
                for (int j = 0; j < grads.Count; j++)
                    if (!grads[j].IsInvalid) result[slots[j]] = grads[j].MoveToOuterDisposeScope();
            }
            return result.ToList()!;
        }
    }
}
