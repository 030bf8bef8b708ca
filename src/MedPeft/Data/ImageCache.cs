using System.Collections.Concurrent;
using TorchSharp;
using static TorchSharp.torch;

namespace MedPeft.Data;

/// <summary>Decoded, preprocessed images kept in memory by path (the embedded benchmark's images are small). Cached
/// tensors are detached from every dispose scope so a training step's scope never frees them.</summary>
public sealed class ImageCache(ImageProcessor processor) : IDisposable
{
    readonly ConcurrentDictionary<string, Tensor> _cache = new();
    public ImageProcessor Processor { get; } = processor;

    public Tensor Get(string path) => _cache.GetOrAdd(path, p => Processor.Load(p).DetachFromDisposeScope());

    /// <summary>Decodes many images up front on all cores (SkiaSharp decoding is thread-safe per image).</summary>
    public void Preload(IEnumerable<string> paths) =>
        Parallel.ForEach(paths.Distinct().Where(p => !_cache.ContainsKey(p)), p => Get(p));

    public void Dispose()
    {
        foreach (var t in _cache.Values) t.Dispose();
        _cache.Clear();
    }
}
