using System.Collections.Concurrent;
using System.Diagnostics;

namespace MedPeft.Training;

/// <summary>Runs an enumeration (typically "decode, augment and tokenise the next batch") on a background thread, up
/// to <c>depth</c> items ahead of the consumer, so CPU data work overlaps the training step. Items should be plain CPU
/// data (arrays): TorchSharp's dispose scopes are per thread, so tensors are built by the consumer. An exception in
/// the producer is rethrown by <see cref="Next"/> in order (after the items produced before it); disposing or
/// cancelling stops the producer and waits for it. Records how long the consumer waited (<see cref="StallSeconds"/>).</summary>
public sealed class Prefetcher<T> : IDisposable
{
    readonly BlockingCollection<(T Item, Exception? Error)> _queue;
    readonly CancellationTokenSource _cts;
    readonly Thread _thread;
    readonly Stopwatch _stall = new();
    bool _finished;

    public Prefetcher(IEnumerable<T> source, int depth, CancellationToken cancel = default)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(depth, 1);
        _queue = new BlockingCollection<(T, Exception?)>(depth);
        _cts = CancellationTokenSource.CreateLinkedTokenSource(cancel);
        _thread = new Thread(() => Produce(source)) { IsBackground = true, Name = "medpeft-prefetch" };
        _thread.Start();
    }

    /// <summary>Seconds the consumer spent waiting for an item that was not ready.</summary>
    public double StallSeconds => _stall.Elapsed.TotalSeconds;

    void Produce(IEnumerable<T> source)
    {
        var token = _cts.Token;
        try
        {
            foreach (var item in source)
            {
                token.ThrowIfCancellationRequested();
                _queue.Add((item, null), token);
            }
        }
        catch (OperationCanceledException) when (token.IsCancellationRequested) { }
        catch (Exception e)
        {
            try { _queue.Add((default!, e), token); } catch (OperationCanceledException) { }
        }
        finally { _queue.CompleteAdding(); }
    }

    /// <summary>The next item; false at the end of the source. Rethrows a producer exception (MedPeftException
    /// unchanged, so its message still names the file; anything else wrapped with its message).</summary>
    public bool TryNext(out T item)
    {
        item = default!;
        if (_finished) return false;
        _stall.Start();
        bool got;
        (T Item, Exception? Error) entry;
        try { got = _queue.TryTake(out entry, Timeout.Infinite, _cts.Token); }
        finally { _stall.Stop(); }
        if (!got) { _finished = true; return false; }
        if (entry.Error is not null)
        {
            _finished = true;
            if (entry.Error is MedPeftException) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(entry.Error);
            throw new MedPeftException($"data loading failed: {entry.Error.GetType().Name}: {entry.Error.Message}");
        }
        item = entry.Item;
        return true;
    }

    public T Next() => TryNext(out var item) ? item : throw new InvalidOperationException("the prefetched source is exhausted");

    public void Dispose()
    {
        _cts.Cancel();
        _thread.Join();
        _cts.Dispose();
        _queue.Dispose();
    }
}
