using System.Diagnostics;
using MedPeft.Data;
using TorchSharp;
using static TorchSharp.torch;

namespace MedPeft.Training;

public sealed record DataBenchmarkResult(int Size, int Batch, int Steps, bool Augmented, int Prefetch,
    double DecodeImagesPerSecond, double ComputeSecondsPerStep,
    double InlineImagesPerSecond, double InlineStallSecondsPerStep,
    double PrefetchImagesPerSecond, double PrefetchStallSecondsPerStep);

/// <summary>How fast the training image pipeline is and whether it stalls a training step: decodes (and augments)
/// real image files into batches, once alone, then interleaved with a stand-in training step (fp32 matmuls on the
/// training thread for about the given time), prepared inline vs on the prefetch thread. "Stall" is the time the
/// training thread spent on or waiting for data per step.</summary>
public static class DataBenchmark
{
    public static DataBenchmarkResult Run(IReadOnlyList<string> imagePaths, int size, Augmentation? augmentation, int batch, int steps,
        double stepSeconds, int prefetch, long seed = 42)
    {
        if (imagePaths.Count == 0) throw new MedPeftException("bench data: no images");
        var processor = new ImageProcessor(size, Normalization.Blip);
        var batches = Enumerable.Range(0, steps)
            .Select(s => Enumerable.Range(0, batch).Select(i => imagePaths[(s * batch + i) % imagePaths.Count]).ToArray()).ToArray();
        float[][] Prepare(string[] paths, int step) => paths.Select((p, i) => augmentation is null
            ? processor.Pixels(p) : processor.Pixels(p, augmentation, seed, step, $"{i}\n{p}")).ToArray();

        Prepare(batches[0], 0);   // warm-up: codec and first-call costs
        var clock = Stopwatch.StartNew();
        for (int s = 0; s < steps; s++) Prepare(batches[s], s);
        double decodeRate = steps * batch / clock.Elapsed.TotalSeconds;

        using var a = torch.randn(384, 384);
        int matmuls = Calibrate(a, stepSeconds);
        void Step(float[][] pixels)
        {
            using var scope = torch.NewDisposeScope();
            var x = VqaBatcher.Stack(null, pixels, size, CPU);
            var acc = x.mean();
            var m = a;
            for (int i = 0; i < matmuls; i++) m = torch.mm(m, a).tanh();
            _ = (acc + m.sum()).item<float>();
        }

        clock.Restart();
        var stall = new Stopwatch();
        double compute = 0;
        for (int s = 0; s < steps; s++)
        {
            stall.Start(); var px = Prepare(batches[s], s); stall.Stop();
            var t = Stopwatch.StartNew(); Step(px); compute += t.Elapsed.TotalSeconds;
        }
        double inlineSeconds = clock.Elapsed.TotalSeconds, inlineStall = stall.Elapsed.TotalSeconds;

        clock.Restart();
        double prefetchStall;
        using (var p = new Prefetcher<float[][]>(batches.Select((b, s) => Prepare(b, s)), Math.Max(1, prefetch)))
        {
            for (int s = 0; s < steps; s++) Step(p.Next());
            prefetchStall = p.StallSeconds;
        }
        double prefetchSeconds = clock.Elapsed.TotalSeconds;
        return new DataBenchmarkResult(size, batch, steps, augmentation is not null, Math.Max(1, prefetch), decodeRate, compute / steps,
            steps * batch / inlineSeconds, inlineStall / steps, steps * batch / prefetchSeconds, prefetchStall / steps);
    }

    /// <summary>Writes <paramref name="count"/> grayscale PNGs of side <paramref name="pixels"/> (smooth gradients plus
    /// seeded noise, like a radiograph's texture, so they do not compress to nothing) for a benchmark without data.</summary>
    public static IReadOnlyList<string> WriteSampleImages(string dir, int count, int pixels, long seed = 42)
    {
        Directory.CreateDirectory(dir);
        var rng = new Random((int)seed);
        var paths = new List<string>();
        for (int k = 0; k < count; k++)
        {
            using var bmp = new SkiaSharp.SKBitmap(new SkiaSharp.SKImageInfo(pixels, pixels, SkiaSharp.SKColorType.Gray8, SkiaSharp.SKAlphaType.Opaque));
            var px = new byte[pixels * pixels];
            for (int y = 0; y < pixels; y++)
                for (int x = 0; x < pixels; x++)
                    px[y * pixels + x] = (byte)Math.Clamp(128 + 80 * Math.Sin((x + k * 7) / 40.0) * Math.Cos(y / 55.0) + rng.Next(-20, 21), 0, 255);
            System.Runtime.InteropServices.Marshal.Copy(px, 0, bmp.GetPixels(), px.Length);
            using var data = bmp.Encode(SkiaSharp.SKEncodedImageFormat.Png, 100);
            var path = Path.Combine(dir, $"img{k:D3}.png");
            File.WriteAllBytes(path, data.ToArray());
            paths.Add(path);
        }
        return paths;
    }

    /// <summary>Matmul count that takes about <paramref name="seconds"/> on this machine.</summary>
    static int Calibrate(Tensor a, double seconds)
    {
        using var scope = torch.NewDisposeScope();
        var clock = Stopwatch.StartNew();
        int n = 0;
        var m = a;
        while (clock.Elapsed.TotalSeconds < 0.2) { m = torch.mm(m, a).tanh(); _ = m[0, 0].item<float>(); n++; }
        return Math.Max(1, (int)Math.Round(n * seconds / clock.Elapsed.TotalSeconds));
    }
}
