using MedPeft.Data;
using MedPeft.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace MedPeft.Tests.Training;

public class PrefetchTests
{
    [Fact]
    public void Prefetcher_yields_the_source_in_order_on_another_thread()
    {
        int caller = Environment.CurrentManagedThreadId;
        var threads = new System.Collections.Concurrent.ConcurrentBag<int>();
        IEnumerable<int> Source() { for (int i = 0; i < 50; i++) { threads.Add(Environment.CurrentManagedThreadId); yield return i; } }
        using var p = new Prefetcher<int>(Source(), depth: 3);
        var got = new List<int>();
        while (p.TryNext(out var x)) got.Add(x);
        Assert.Equal(Enumerable.Range(0, 50), got);
        Assert.DoesNotContain(caller, threads);
    }

    [Fact]
    public void Prefetcher_is_bounded()
    {
        int produced = 0;
        IEnumerable<int> Endless() { for (int i = 0; ; i++) { Interlocked.Increment(ref produced); yield return i; } }
        using var p = new Prefetcher<int>(Endless(), depth: 2);
        Assert.True(SpinWait.SpinUntil(() => Volatile.Read(ref produced) >= 3, 5000));
        Thread.Sleep(50);
        // Two queued + one produced and blocked in Add: never more, however long the consumer waits.
        Assert.InRange(Volatile.Read(ref produced), 3, 3);
        Assert.Equal(0, p.Next());
    }

    [Fact]
    public void A_producer_error_arrives_after_the_earlier_items_and_names_the_file()
    {
        var dir = Directory.CreateTempSubdirectory("medpeft-prefetch-").FullName;
        var good = TestImagesPath(dir);
        var processor = new ImageProcessor(16, Normalization.Unit);
        var paths = new[] { good, good, Path.Combine(dir, "missing.png"), good };
        using var p = new Prefetcher<float[]>(paths.Select(processor.Pixels), depth: 2);
        Assert.Equal(768, p.Next().Length);
        Assert.Equal(768, p.Next().Length);
        var e = Assert.Throws<MedPeftException>(() => p.Next());
        Assert.Contains("missing.png", e.Message);
        Assert.False(p.TryNext(out _));
    }

    [Fact]
    public void Disposing_stops_a_producer_blocked_on_a_full_queue_and_cancellation_reaches_the_consumer()
    {
        IEnumerable<int> Endless() { for (int i = 0; ; i++) yield return i; }
        var p = new Prefetcher<int>(Endless(), depth: 1);
        Assert.Equal(0, p.Next());
        p.Dispose();   // returns only once the producer thread has ended

        using var cts = new CancellationTokenSource();
        using var q = new Prefetcher<int>(new[] { 1 }.Concat(Never(cts.Token)), depth: 1, cts.Token);
        Assert.Equal(1, q.Next());
        cts.Cancel();
        Assert.ThrowsAny<OperationCanceledException>(() => q.Next());
    }

    static IEnumerable<int> Never(CancellationToken token) { token.WaitHandle.WaitOne(); yield break; }

    static string TestImagesPath(string dir) => MedPeft.Tests.Data.TestImages.WriteRgb(Path.Combine(dir, "ok.png"), 20, 20);

    [Fact]
    public void Training_with_prefetch_sees_the_same_batches_and_epochs_as_inline()
    {
        var data = Enumerable.Range(0, 10).ToList();
        List<(int Thread, string Batch)> Run(int prefetch)
        {
            TorchRuntime.Seed(1);
            var w = torch.nn.Parameter(torch.zeros(1));
            using var model = new Holder(w);
            var seen = new List<(int, string)>();
            var o = new TrainOptions { MaxSteps = 7, BatchSize = 4, LearningRate = 0.1, WarmupRatio = 0, Seed = 3, PrefetchBatches = prefetch };
            var r = Trainer.Run(model, data, (batch, epoch) => (Thread: Environment.CurrentManagedThreadId, Text: $"{epoch}:{string.Join(',', batch)}"),
                b => { seen.Add((b.Thread, b.Text)); return (w - torch.tensor((float)b.Text.Length)).pow(2).sum(); }, o);
            Assert.Equal(7, r.Steps);
            Assert.True(r.DataWaitSeconds >= 0);
            return seen;
        }
        var inline = Run(0);
        var ahead = Run(2);
        Assert.Equal(inline.Select(x => x.Batch), ahead.Select(x => x.Batch));
        Assert.Equal(["0", "0", "0", "1", "1", "1", "2"], inline.Select(x => x.Batch.Split(':')[0]));
        Assert.All(inline, x => Assert.Equal(Environment.CurrentManagedThreadId, x.Thread));
        Assert.All(ahead, x => Assert.NotEqual(Environment.CurrentManagedThreadId, x.Thread));
    }

    sealed class Holder : torch.nn.Module
    {
        public TorchSharp.Modules.Parameter w;
        public Holder(TorchSharp.Modules.Parameter p) : base("holder") { w = p; RegisterComponents(); }
    }
}
