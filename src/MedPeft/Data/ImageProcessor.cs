using SkiaSharp;
using TorchSharp;
using static TorchSharp.torch;

namespace MedPeft.Data;

/// <summary>A named pixel normalisation: x' = (x·Scale − mean) / std per channel, x in [0, 255].</summary>
public sealed record Normalization(string Name, double Scale, float[] Mean, float[] Std)
{
    /// <summary>BLIP / CLIP statistics (HF BlipImageProcessor, CLIPImageProcessor).</summary>
    public static readonly Normalization Blip = new("blip", 1 / 255.0, [0.48145466f, 0.4578275f, 0.40821073f], [0.26862954f, 0.26130258f, 0.27577711f]);
    public static readonly Normalization Clip = Blip with { Name = "clip" };
    public static readonly Normalization ImageNet = new("imagenet", 1 / 255.0, [0.485f, 0.456f, 0.406f], [0.229f, 0.224f, 0.225f]);
    /// <summary>MISS's quirk: ToTensor() then a second division by 255 — pixels in [0, 1/255], no mean/std.</summary>
    public static readonly Normalization MissRaw = new("miss-raw", 1 / (255.0 * 255.0), [0f, 0f, 0f], [1f, 1f, 1f]);
    /// <summary>Plain ToTensor(): pixels in [0, 1].</summary>
    public static readonly Normalization Unit = new("unit", 1 / 255.0, [0f, 0f, 0f], [1f, 1f, 1f]);

    public static readonly IReadOnlyDictionary<string, Normalization> Named =
        new[] { Blip, Clip, ImageNet, MissRaw, Unit }.ToDictionary(n => n.Name);

    public static Normalization Get(string name) => Named.TryGetValue(name, out var n) ? n
        : throw new MedPeftException($"unknown normalization \"{name}\" (known: {string.Join(", ", Named.Keys)})");
}

/// <summary>Decodes an image file (PNG/JPEG, grayscale or colour, 8 or 16 bit) to RGB, resizes it to a square of the
/// model's input size (bicubic, as BLIP's processor) and returns a normalised float tensor [3, S, S].</summary>
public sealed class ImageProcessor(int size, Normalization normalization)
{
    public int Size { get; } = size;
    public Normalization Normalization { get; } = normalization;

    public Tensor Load(string path)
    {
        using var decoded = Decode(path);
        using var resized = decoded.Resize(new SKImageInfo(Size, Size, SKColorType.Rgba8888, SKAlphaType.Unpremul), new SKSamplingOptions(SKCubicResampler.CatmullRom))
            ?? throw new MedPeftException($"{path}: could not resize image");
        return ToTensor(resized);
    }

    static SKBitmap Decode(string path)
    {
        if (!File.Exists(path)) throw new MedPeftException($"{path}: image file not found");
        using var codec = SKCodec.Create(path) ?? throw new MedPeftException($"{path}: not a decodable image");
        var info = new SKImageInfo(codec.Info.Width, codec.Info.Height, SKColorType.Rgba8888, SKAlphaType.Unpremul);
        var bitmap = new SKBitmap(info);
        var result = codec.GetPixels(info, bitmap.GetPixels());
        if (result is not (SKCodecResult.Success or SKCodecResult.IncompleteInput))
        {
            bitmap.Dispose();
            throw new MedPeftException($"{path}: image decode failed ({result})");
        }
        return bitmap;
    }

    Tensor ToTensor(SKBitmap bmp)
    {
        var bytes = bmp.Bytes;   // RGBA, row-major
        int n = Size * Size;
        var data = new float[3 * n];
        var norm = Normalization;
        for (int i = 0; i < n; i++)
            for (int c = 0; c < 3; c++)
                data[c * n + i] = (float)((bytes[4 * i + c] * norm.Scale - norm.Mean[c]) / norm.Std[c]);
        return torch.tensor(data, [3, Size, Size]);
    }
}
