using System.Diagnostics;
using System.Text.Json.Nodes;
using MedPeft.Models;
using MedPeft.Tuning;
using TorchSharp;
using static TorchSharp.torch;

namespace MedPeft.Training;

public sealed record TrainOptions
{
    public int Epochs { get; init; } = 10;
    /// <summary>Stops after this many optimizer steps when set (the schedule spans them).</summary>
    public int? MaxSteps { get; init; }
    public int BatchSize { get; init; } = 32;
    public int GradientAccumulation { get; init; } = 1;
    public double LearningRate { get; init; } = 1e-4;
    public double WeightDecay { get; init; } = 0.05;
    public double WarmupRatio { get; init; } = 0.05;
    public double MaxGradNorm { get; init; } = 1.0;
    /// <summary>Evaluate on the validation split every N optimizer steps (0 = once per epoch).</summary>
    public int EvalEvery { get; init; } = 0;
    public int LogEvery { get; init; } = 10;
    public long Seed { get; init; } = 42;
    public string? LogPath { get; init; }
    /// <summary>Batches prepared ahead on a background thread (0 = prepare inline on the training thread).</summary>
    public int PrefetchBatches { get; init; } = 2;
    /// <summary>Weight dtype of the model (auto, bf16, fp16, fp32): read by the jobs that load it (see
    /// <see cref="Precision"/>); the trainer itself adapts to whatever dtype the trainable parameters have.</summary>
    public string DType { get; init; } = "auto";
    /// <summary>Recompute each transformer layer in backward instead of keeping its activations (HF's
    /// gradient_checkpointing_enable()).</summary>
    public bool GradientCheckpointing { get; init; }
}

public sealed record TrainProgress(int Step, int TotalSteps, double Loss, double LearningRate, double StepsPerSecond, TimeSpan Eta, double? BestValidation);

public sealed record TrainResult(int Steps, double TrainSeconds, double StepsPerSecond, IReadOnlyList<(int Step, double Loss)> LossCurve,
    double? BestValidation, int? BestStep, long PeakMemoryBytes)
{
    /// <summary>Seconds the training thread spent on or waiting for data (batch preparation) instead of computing.</summary>
    public double DataWaitSeconds { get; init; }
    /// <summary>fp16 training: optimizer steps skipped because the loss-scaled gradients overflowed.</summary>
    public int SkippedSteps { get; init; }
}

/// <summary>The training loop, as plain code: AdamW over the trainable parameters only (frozen ones get no optimizer
/// state; no weight decay on norms or biases), linear warm-up + cosine decay, gradient accumulation and clipping,
/// periodic validation with selection of the best trainable state (never on test), a JSONL log and progress
/// callbacks. Generic over the example type: <paramref name="loss"/> maps a micro-batch to its mean loss.</summary>
public static class Trainer
{
    /// <summary>Examples go straight to <paramref name="loss"/> on the training thread (no preparation stage).</summary>
    public static TrainResult Run<T>(
        nn.Module model,
        IReadOnlyList<T> train,
        Func<IReadOnlyList<T>, Tensor> loss,
        TrainOptions o,
        Func<double>? validate = null,
        IProgress<TrainProgress>? progress = null,
        CancellationToken cancel = default) =>
        Run(model, train, (batch, _) => batch, loss, o with { PrefetchBatches = 0 }, validate, progress, cancel);

    /// <summary>With a preparation stage: <paramref name="prepare"/> turns a micro-batch (and its epoch, for seeded
    /// augmentation) into CPU data — decoded pixels, token ids — on a background thread, <see
    /// cref="TrainOptions.PrefetchBatches"/> batches ahead; <paramref name="loss"/> builds tensors from it on the
    /// training thread. The batch order is the same with or without prefetch.</summary>
    public static TrainResult Run<T, TBatch>(
        nn.Module model,
        IReadOnlyList<T> train,
        Func<IReadOnlyList<T>, int, TBatch> prepare,
        Func<TBatch, Tensor> loss,
        TrainOptions o,
        Func<double>? validate = null,
        IProgress<TrainProgress>? progress = null,
        CancellationToken cancel = default)
    {
        if (train.Count == 0) throw new MedPeftException("the training split is empty");
        var trainable = model.named_parameters().Where(p => p.parameter.requires_grad).ToList();
        if (trainable.Count == 0) throw new MedPeftException("the strategy leaves no trainable parameter");
        if (o.GradientCheckpointing) Checkpointing.Require(model);
        // 16-bit models train through fp32 master weights (fp16 with dynamic loss scaling); fp32 ones are untouched.
        using var masters = new MasterWeights(trainable.Select(p => p.parameter));
        var scaler = trainable.Any(p => p.parameter.dtype == ScalarType.Float16) ? new LossScaler() : null;
        var decay = trainable.Where(p => !NoDecay(p.name, p.parameter)).Select(p => masters.MasterOf(p.parameter)).ToList();
        var noDecay = trainable.Where(p => NoDecay(p.name, p.parameter)).Select(p => masters.MasterOf(p.parameter)).ToList();
        var groups = new List<TorchSharp.Modules.AdamW.ParamGroup>();
        if (decay.Count > 0) groups.Add(new(decay, o.LearningRate, 0.9, 0.999, 1e-8, o.WeightDecay, false, false));
        if (noDecay.Count > 0) groups.Add(new(noDecay, o.LearningRate, 0.9, 0.999, 1e-8, 0.0, false, false));
        using var optimizer = torch.optim.AdamW(groups, o.LearningRate, 0.9, 0.999, 1e-8, o.WeightDecay, false, false);

        int microPerEpoch = (train.Count + o.BatchSize - 1) / o.BatchSize;
        int stepsPerEpoch = Math.Max(1, microPerEpoch / o.GradientAccumulation);
        int total = o.MaxSteps ?? stepsPerEpoch * o.Epochs;
        int warmup = (int)Math.Round(total * o.WarmupRatio);
        int evalEvery = o.EvalEvery > 0 ? o.EvalEvery : stepsPerEpoch;
        var batches = Schedule(train, o, total * o.GradientAccumulation).Select(b => prepare(b.Batch, b.Epoch));
        using var prefetcher = o.PrefetchBatches > 0 ? new Prefetcher<TBatch>(batches, o.PrefetchBatches, cancel) : null;
        using var inline = prefetcher is null ? batches.GetEnumerator() : null;
        var dataClock = new Stopwatch();
        TBatch NextBatch()
        {
            if (prefetcher is not null) return prefetcher.Next();
            dataClock.Start();
            try { return inline!.MoveNext() ? inline.Current : throw new InvalidOperationException("batch schedule exhausted"); }
            finally { dataClock.Stop(); }
        }

        using var log = o.LogPath is null ? null : new StreamWriter(o.LogPath, append: false) { AutoFlush = true };
        var curve = new List<(int, double)>();
        double? best = null; int? bestStep = null;
        Dictionary<string, Tensor>? bestState = null;
        var clock = Stopwatch.StartNew();
        var validationClock = new Stopwatch();   // validation time is not training time
        double window = 0; int windowCount = 0;
        PeakMemory.Reset();
        var trainParams = masters.Masters;

        model.train();
        for (int step = 0; step < total; step++)
        {
            cancel.ThrowIfCancellationRequested();
            double lr = LearningRateSchedule.At(step, total, warmup, o.LearningRate);
            foreach (var g in optimizer.ParamGroups) g.LearningRate = lr;
            double stepLoss = 0;
            for (int micro = 0; micro < o.GradientAccumulation; micro++)
            {
                var batch = NextBatch();
                using var scope = torch.NewDisposeScope();
                var l = loss(batch);
                if (!double.IsFinite(l.item<float>())) throw new TrainingDivergedException($"loss became {l.item<float>()} at step {step} (learning rate {lr:G3} too high?)");
                (l * ((scaler?.Scale ?? 1.0) / o.GradientAccumulation)).backward();
                stepLoss += l.item<float>() / o.GradientAccumulation;
            }
            using (torch.NewDisposeScope())
            {
                bool finite = masters.GradientsToMasters(scaler?.Scale ?? 1.0, checkFinite: scaler is not null);
                if (finite)
                {
                    if (o.MaxGradNorm > 0) torch.nn.utils.clip_grad_norm_(trainParams, o.MaxGradNorm);
                    optimizer.step();
                    masters.MastersToModel();
                }
                scaler?.Update(finite);
                optimizer.zero_grad();
                masters.ClearGradients();
            }
            window += stepLoss; windowCount++;
            int done = step + 1;
            double sps = done / (clock.Elapsed - validationClock.Elapsed).TotalSeconds;
            if (done % o.LogEvery == 0 || done == total)
            {
                double mean = window / windowCount;
                curve.Add((done, mean));
                log?.WriteLine(new JsonObject { ["step"] = done, ["loss"] = mean, ["lr"] = lr, ["steps_per_second"] = sps, ["elapsed_seconds"] = clock.Elapsed.TotalSeconds }.ToJsonString());
                window = 0; windowCount = 0;
            }
            if (validate is not null && (done % evalEvery == 0 || done == total))
            {
                validationClock.Start();
                model.eval();
                double v = validate();
                model.train();
                validationClock.Stop();
                log?.WriteLine(new JsonObject { ["step"] = done, ["validation"] = v }.ToJsonString());
                if (best is null || v > best)
                {
                    best = v; bestStep = done;
                    foreach (var t in bestState?.Values ?? Enumerable.Empty<Tensor>()) t.Dispose();
                    bestState = trainable.ToDictionary(p => p.name, p => p.parameter.detach().clone().DetachFromDisposeScope());
                }
            }
            progress?.Report(new TrainProgress(done, total, curve.Count > 0 ? curve[^1].Item2 : stepLoss, lr, sps,
                TimeSpan.FromSeconds((total - done) / Math.Max(sps, 1e-9)), best));
        }
        double seconds = (clock.Elapsed - validationClock.Elapsed).TotalSeconds;
        long peak = PeakMemory.Bytes();
        model.eval();
        if (bestState is not null)
        {
            using (torch.no_grad())
                foreach (var (name, p) in trainable) p.copy_(bestState[name]);
            foreach (var t in bestState.Values) t.Dispose();
        }
        return new TrainResult(total, seconds, total / seconds, curve, best, bestStep, peak)
        {
            DataWaitSeconds = prefetcher?.StallSeconds ?? dataClock.Elapsed.TotalSeconds,
            SkippedSteps = scaler?.SkippedSteps ?? 0,
        };
    }

    /// <summary>The micro-batches in training order with their epoch: a seeded shuffle per pass over the data, batches
    /// of BatchSize taken in order (the last one of a pass may be smaller).</summary>
    public static IEnumerable<(IReadOnlyList<T> Batch, int Epoch)> Schedule<T>(IReadOnlyList<T> train, TrainOptions o, int microBatches)
    {
        var rng = new Random((int)o.Seed);
        var order = Enumerable.Range(0, train.Count).ToArray();
        int cursor = order.Length;   // forces a shuffle before the first batch
        int epoch = -1;
        for (int i = 0; i < microBatches; i++)
        {
            if (cursor >= order.Length) { rng.Shuffle(order); cursor = 0; epoch++; }
            yield return (order.Skip(cursor).Take(o.BatchSize).Select(j => train[j]).ToList(), epoch);
            cursor += o.BatchSize;
        }
    }

    /// <summary>No weight decay on norm parameters (by name) and on biases / other 1-D tensors.</summary>
    public static bool NoDecay(string name, Tensor p) => p.dim() < 2 || SelectiveTuning.LayerNorm.Matches(name) || name.EndsWith("bias");
}
