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

/// <summary>Training-time augmentation, BLIP's fine-tuning recipe minus what breaks medical images: torchvision's
/// RandomResizedCrop(scale = (MinScale, MaxScale), ratio = (MinRatio, MaxRatio), bicubic) — BLIP/MISS use scale
/// (0.5, 1.0) — then a rotation by a uniform angle in ±MaxRotationDegrees about the centre (corners filled black, as
/// torchvision's fill 0). BLIP's horizontal flip is left out on purpose: it swaps left and right, which medical
/// questions and reports name. Never applied at evaluation.</summary>
public sealed record Augmentation(double MinScale = 0.5, double MaxScale = 1.0, double MinRatio = 3.0 / 4, double MaxRatio = 4.0 / 3,
    double MaxRotationDegrees = 10)
{
    public static readonly Augmentation Blip = new();

    public void Validate()
    {
        if (!(MinScale > 0 && MinScale <= MaxScale && MaxScale <= 1)) throw new MedPeftException($"augmentation: crop scale range ({MinScale}, {MaxScale}) must satisfy 0 < min ≤ max ≤ 1");
        if (!(MinRatio > 0 && MinRatio <= MaxRatio)) throw new MedPeftException($"augmentation: aspect ratio range ({MinRatio}, {MaxRatio}) must satisfy 0 < min ≤ max");
        if (!(MaxRotationDegrees >= 0 && MaxRotationDegrees <= 180)) throw new MedPeftException($"augmentation: rotation {MaxRotationDegrees}° must be in [0, 180]");
    }

    /// <summary>torchvision's RandomResizedCrop.get_params: up to 10 tries of (area share, log-uniform aspect ratio)
    /// whose rounded box fits, else the centre crop clamped to the ratio range. Python's round (half to even) is
    /// .NET's default Math.Round.</summary>
    public (int X, int Y, int Width, int Height) Crop(int width, int height, Random rng)
    {
        double area = (double)width * height;
        double logLo = Math.Log(MinRatio), logHi = Math.Log(MaxRatio);
        for (int attempt = 0; attempt < 10; attempt++)
        {
            double target = area * (MinScale + (MaxScale - MinScale) * rng.NextDouble());
            double ratio = Math.Exp(logLo + (logHi - logLo) * rng.NextDouble());
            int w = (int)Math.Round(Math.Sqrt(target * ratio));
            int h = (int)Math.Round(Math.Sqrt(target / ratio));
            if (w > 0 && w <= width && h > 0 && h <= height)
                return (rng.Next(0, width - w + 1), rng.Next(0, height - h + 1), w, h);
        }
        double inRatio = (double)width / height;
        int cw = width, ch = height;
        if (inRatio < MinRatio) ch = (int)Math.Round(cw / MinRatio);
        else if (inRatio > MaxRatio) cw = (int)Math.Round(ch * MaxRatio);
        return ((width - cw) / 2, (height - ch) / 2, cw, ch);
    }

    public double Angle(Random rng) => MaxRotationDegrees == 0 ? 0 : (2 * rng.NextDouble() - 1) * MaxRotationDegrees;

    /// <summary>The random stream of one (seed, epoch, sample): the same triple gives the same crop and angle in any
    /// order and on any thread (prefetch), different epochs give different views.</summary>
    public static Random RandomFor(long seed, int epoch, string sampleKey)
    {
        ulong h = 1469598103934665603UL;   // FNV-1a over the triple
        void Mix(ulong v) { for (int i = 0; i < 8; i++) { h ^= (v >> (8 * i)) & 0xFF; h *= 1099511628211UL; } }
        Mix((ulong)seed); Mix((ulong)epoch);
        foreach (char c in sampleKey) Mix(c);
        return new Random((int)(h ^ (h >> 32)) & int.MaxValue);
    }
}

/// <summary>Decodes an image file (PNG, JPEG, WebP; grayscale or colour, 8 or 16 bit) to RGB, brings it to a square
/// of the model's input size the way the checkpoint's processor does (<see cref="ImageGeometry"/>: BLIP's square
/// bicubic resize by default; CLIP's shortest-edge resize + centre crop; LLaVA's pad-to-square) and returns
/// normalised pixels [3, S, S] (channel-major).
/// Grayscale is replicated to R = G = B (PIL's convert("RGB")). 16-bit samples v become v &gt;&gt; 8 (libpng's
/// strip-16, what SkiaSharp's decoder does): the full range is kept. PIL differs here on purpose: it opens a 16-bit
/// PNG as mode "I"/"I;16" and convert("RGB") clips every value above 255 to white, destroying the image; no checkpoint
/// depends on that, and the public Med-VQA / report datasets are 8-bit. Alpha is ignored (opaque images assumed).
/// <see cref="Pixels(string)"/> is plain CPU work, safe on any thread (the prefetcher calls it); tensors are made
/// by the caller.</summary>
public sealed class ImageProcessor(int size, Normalization normalization, ImageGeometry? geometry = null)
{
    public int Size { get; } = size;
    public Normalization Normalization { get; } = normalization;
    public ImageGeometry Geometry { get; } = geometry ?? ImageGeometry.Square;

    static readonly SKSamplingOptions Bicubic = new(SKCubicResampler.CatmullRom);

    /// <summary>The processor of a checkpoint folder: its input size, the named normalisation and the folder's
    /// geometry (<see cref="ImageGeometry.FromFolder"/>; <paramref name="clipDefault"/> for LLaVA's CLIP tower).</summary>
    public static ImageProcessor ForFolder(string dir, int size, Normalization normalization, bool clipDefault = false) =>
        new(size, normalization, ImageGeometry.FromFolder(dir, size, clipDefault));

    /// <summary>The evaluation path: decode, resize (and crop) to S×S as <see cref="Geometry"/> says, normalise.</summary>
    public Tensor Load(string path) => torch.tensor(Pixels(path), [3, Size, Size]);

    public float[] Pixels(string path)
    {
        using var decoded = DecodeForGeometry(path);
        if (Geometry.ShortestEdge is int edge)
        {
            var (w, h) = ImageGeometry.ResizeShape(decoded.Width, decoded.Height, edge);
            using var scaled = Resize(decoded, w, h, path);
            var (left, top) = ImageGeometry.CropOffset(w, h, Size);
            using var cropped = Canvas(SKColors.Black, c => Paste(c, scaled, -left, -top));
            return Normalize(cropped);
        }
        using var resized = Resize(decoded, Size, Size, path);
        return Normalize(resized);
    }

    static SKBitmap Resize(SKBitmap source, int width, int height, string path) =>
        source.Resize(new SKImageInfo(width, height, SKColorType.Rgba8888, SKAlphaType.Unpremul), Bicubic)
        ?? throw new MedPeftException($"{path}: could not resize image");

    /// <summary>A fresh S×S (or <paramref name="side"/>²) bitmap filled with <paramref name="fill"/> and drawn on.</summary>
    SKBitmap Canvas(SKColor fill, Action<SKCanvas> draw, int? side = null)
    {
        var target = new SKBitmap(new SKImageInfo(side ?? Size, side ?? Size, SKColorType.Rgba8888, SKAlphaType.Premul));
        using var canvas = new SKCanvas(target);
        canvas.Clear(fill);
        draw(canvas);
        return target;
    }

    /// <summary>Decodes, then pads to a square with the mean colour when the geometry asks (LLaVA's expand2square:
    /// the image pasted at offset (long − short) // 2 on the short axis).</summary>
    SKBitmap DecodeForGeometry(string path)
    {
        var decoded = Decode(path);
        if (!Geometry.PadToSquare || decoded.Width == decoded.Height) return decoded;
        using (decoded)
        {
            int side = Math.Max(decoded.Width, decoded.Height);
            var mean = Normalization.Mean.Select(m => (byte)(int)(m * 255)).ToArray();   // Python int(): truncation
            return Canvas(new SKColor(mean[0], mean[1], mean[2]),
                c => Paste(c, decoded, (side - decoded.Width) / 2, (side - decoded.Height) / 2), side);
        }
    }

    /// <summary>Copies a bitmap at an integer offset (nearest sampling: pixels land unchanged, as PIL's paste / an
    /// array slice).</summary>
    static void Paste(SKCanvas canvas, SKBitmap bitmap, int x, int y)
    {
        using var image = SKImage.FromBitmap(bitmap);
        canvas.DrawImage(image, x, y, new SKSamplingOptions(SKFilterMode.Nearest), null);
    }

    /// <summary>The training path with augmentation: random resized crop + rotation drawn in one bicubic resampling,
    /// from the random stream of (seed, epoch, sampleKey).</summary>
    public float[] Pixels(string path, Augmentation augmentation, long seed, int epoch, string sampleKey)
    {
        var rng = Augmentation.RandomFor(seed, epoch, sampleKey);
        using var decoded = DecodeForGeometry(path);   // the random crop replaces resize/centre crop, not the padding
        var (x, y, w, h) = augmentation.Crop(decoded.Width, decoded.Height, rng);
        double angle = augmentation.Angle(rng);
        using var source = SKImage.FromBitmap(decoded);
        using var target = Canvas(SKColors.Black, canvas =>
        {
            float c = Size / 2f;
            canvas.RotateDegrees((float)angle, c, c);
            using var paint = new SKPaint { IsAntialias = true };
            canvas.DrawImage(source, new SKRect(x, y, x + w, y + h), new SKRect(0, 0, Size, Size), Bicubic, paint);
        });
        return Normalize(target);
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

    float[] Normalize(SKBitmap bmp)
    {
        var bytes = bmp.Bytes;   // RGBA, row-major
        int n = Size * Size;
        var data = new float[3 * n];
        var norm = Normalization;
        for (int i = 0; i < n; i++)
            for (int c = 0; c < 3; c++)
                data[c * n + i] = (float)((bytes[4 * i + c] * norm.Scale - norm.Mean[c]) / norm.Std[c]);
        return data;
    }
}
