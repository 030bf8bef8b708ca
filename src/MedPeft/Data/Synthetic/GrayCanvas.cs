using System.Runtime.InteropServices;
using SkiaSharp;

namespace MedPeft.Data.Synthetic;

/// <summary>
/// A square 8-bit grayscale Skia surface whose drawing coordinates are normalised to [0, 1]
/// (so every drawing is resolution independent), plus the paints the renderers need:
/// anti-aliased fills and strokes of a gray level, optionally blurred (soft tissue edges).
/// </summary>
internal sealed class GrayCanvas : IDisposable
{
    private readonly SKSurface _surface;

    public GrayCanvas(int size)
    {
        Size = size;
        _surface = SKSurface.Create(new SKImageInfo(size, size, SKColorType.Gray8, SKAlphaType.Opaque))
            ?? throw new MedPeftException($"synthetic benchmark: cannot create a {size}×{size} drawing surface");
        Canvas = _surface.Canvas;
        Canvas.Clear(SKColors.Black);
        Canvas.Scale(size, size);
    }

    public int Size { get; }

    public SKCanvas Canvas { get; }

    /// <summary>One pixel in normalised units: the floor for line widths and blur radii.</summary>
    public float Pixel => 1f / Size;

    public static SKColor Gray(float level, float alpha = 1f)
    {
        byte v = ToByte(level);
        return new SKColor(v, v, v, ToByte(alpha));
    }

    public static byte ToByte(float v) => (byte)Math.Clamp((int)MathF.Round(v * 255f), 0, 255);

    /// <summary>A fill of gray <paramref name="level"/>; <paramref name="blur"/> is a Gaussian sigma in normalised units (edge softness).</summary>
    public SKPaint Fill(float level, float alpha = 1f, float blur = 0f)
    {
        var paint = new SKPaint { IsAntialias = true, Style = SKPaintStyle.Fill, Color = Gray(level, alpha) };
        if (blur > 0) paint.MaskFilter = SKMaskFilter.CreateBlur(SKBlurStyle.Normal, blur);
        return paint;
    }

    /// <summary>A round-capped stroke; widths under ~0.7 px are kept at 0.7 px but fainter, so thin structures fade instead of vanishing at 32 px.</summary>
    public SKPaint Stroke(float level, float width, float alpha = 1f, float blur = 0f)
    {
        float minWidth = 0.7f * Pixel;
        if (width < minWidth)
        {
            alpha *= width / minWidth;
            width = minWidth;
        }
        var paint = new SKPaint
        {
            IsAntialias = true,
            Style = SKPaintStyle.Stroke,
            StrokeWidth = width,
            StrokeCap = SKStrokeCap.Round,
            StrokeJoin = SKStrokeJoin.Round,
            Color = Gray(level, alpha),
        };
        if (blur > 0) paint.MaskFilter = SKMaskFilter.CreateBlur(SKBlurStyle.Normal, blur);
        return paint;
    }

    /// <summary>A fill whose gray level goes radially from <paramref name="inner"/> at the centre to <paramref name="outer"/> at the radius.</summary>
    public static SKPaint RadialFill(SKPoint center, float radius, float inner, float outer, float blur = 0f)
    {
        var paint = new SKPaint
        {
            IsAntialias = true,
            Style = SKPaintStyle.Fill,
            Shader = SKShader.CreateRadialGradient(center, radius, [Gray(inner), Gray(outer)], SKShaderTileMode.Clamp),
        };
        if (blur > 0) paint.MaskFilter = SKMaskFilter.CreateBlur(SKBlurStyle.Normal, blur);
        return paint;
    }

    /// <summary>A fill whose gray level goes linearly from <paramref name="a"/> at <paramref name="from"/> to <paramref name="b"/> at <paramref name="to"/>.</summary>
    public static SKPaint LinearFill(SKPoint from, SKPoint to, float a, float b, float blur = 0f)
    {
        var paint = new SKPaint
        {
            IsAntialias = true,
            Style = SKPaintStyle.Fill,
            Shader = SKShader.CreateLinearGradient(from, to, [Gray(a), Gray(b)], SKShaderTileMode.Clamp),
        };
        if (blur > 0) paint.MaskFilter = SKMaskFilter.CreateBlur(SKBlurStyle.Normal, blur);
        return paint;
    }

    public void FillPath(SKPath path, float level, float alpha = 1f, float blur = 0f)
    {
        using var paint = Fill(level, alpha, blur);
        Canvas.DrawPath(path, paint);
    }

    public void FillOval(float cx, float cy, float rx, float ry, float level, float alpha = 1f, float blur = 0f)
    {
        using var paint = Fill(level, alpha, blur);
        Canvas.DrawOval(cx, cy, rx, ry, paint);
    }

    public void StrokePath(SKPath path, float level, float width, float alpha = 1f, float blur = 0f)
    {
        using var paint = Stroke(level, width, alpha, blur);
        Canvas.DrawPath(path, paint);
    }

    /// <summary>
    /// Applies the per-image jitter to everything drawn afterwards: rotation (degrees) and scale
    /// about the image centre, then a shift. Call between Save() and Restore().
    /// </summary>
    public void Jitter(float dx, float dy, float degrees, float scale)
    {
        Canvas.Translate(0.5f + dx, 0.5f + dy);
        Canvas.RotateDegrees(degrees);
        Canvas.Scale(scale);
        Canvas.Translate(-0.5f, -0.5f);
    }

    /// <summary>The pixels, row-major, one byte per pixel.</summary>
    public byte[] ReadPixels()
    {
        var bytes = new byte[Size * Size];
        using var pixmap = _surface.PeekPixels()
            ?? throw new MedPeftException("synthetic benchmark: cannot read back the drawing surface");
        IntPtr start = pixmap.GetPixels();
        for (int y = 0; y < Size; y++)
            Marshal.Copy(start + y * pixmap.RowBytes, bytes, y * Size, Size);
        return bytes;
    }

    public void Dispose() => _surface.Dispose();
}

/// <summary>Acquisition effects applied to the rendered pixels, and image encoding.</summary>
internal static class Acquisition
{
    /// <summary>
    /// Per-image contrast, brightness and gamma jitter plus additive pixel noise (approximately
    /// Gaussian: the sum of four uniforms, which needs no transcendental functions).
    /// </summary>
    public static void Apply(byte[] pixels, SynthRandom rng, float contrast, float brightness, float gamma, float noiseSigma)
    {
        var lut = new float[256];
        for (int i = 0; i < 256; i++)
        {
            float v = i / 255f;
            v = MathF.Pow(v, gamma);
            lut[i] = (v - 0.5f) * contrast + 0.5f + brightness;
        }
        // Sum of 4 uniforms on [-1,1] has variance 4/3: scale to the requested sigma.
        float k = noiseSigma / MathF.Sqrt(4f / 3f);
        for (int i = 0; i < pixels.Length; i++)
        {
            float n = (float)(rng.NextDouble() + rng.NextDouble() + rng.NextDouble() + rng.NextDouble() - 2.0) * 2f;
            pixels[i] = GrayCanvas.ToByte(lut[pixels[i]] + k * n);
        }
    }

    /// <summary>Encodes gray pixels as a JPEG (RGB, like SLAKE's source.jpg files) or a grayscale PNG (like IU-Xray).</summary>
    public static byte[] Encode(byte[] gray, int size, SKEncodedImageFormat format)
    {
        if (format == SKEncodedImageFormat.Png)
        {
            using var bmp = new SKBitmap(new SKImageInfo(size, size, SKColorType.Gray8, SKAlphaType.Opaque));
            CopyInto(bmp, gray);
            using var data = bmp.Encode(SKEncodedImageFormat.Png, 100);
            return data.ToArray();
        }
        using var rgb = new SKBitmap(new SKImageInfo(size, size, SKColorType.Rgba8888, SKAlphaType.Opaque));
        var rgba = new byte[gray.Length * 4];
        for (int i = 0; i < gray.Length; i++)
        {
            rgba[4 * i] = rgba[4 * i + 1] = rgba[4 * i + 2] = gray[i];
            rgba[4 * i + 3] = 255;
        }
        CopyInto(rgb, rgba);
        using var jpeg = rgb.Encode(SKEncodedImageFormat.Jpeg, 92);
        return jpeg.ToArray();
    }

    private static void CopyInto(SKBitmap bmp, byte[] bytes)
    {
        int width = bmp.Info.BytesPerPixel * bmp.Width;
        IntPtr start = bmp.GetPixels();
        for (int y = 0; y < bmp.Height; y++)
            Marshal.Copy(bytes, y * width, start + y * bmp.RowBytes, width);
    }
}

/// <summary>Path helpers (SkiaSharp 4 builds paths with <see cref="SKPathBuilder"/>).</summary>
internal static class Paths
{
    public static SKPath Build(Action<SKPathBuilder> draw)
    {
        using var builder = new SKPathBuilder();
        draw(builder);
        return builder.Detach();
    }

    /// <summary>The path grown by <paramref name="by"/> on every side (outline stroke ∪ path).</summary>
    public static SKPath Dilate(SKPath path, float by)
    {
        using var stroke = new SKPaint { Style = SKPaintStyle.Stroke, StrokeWidth = 2 * by, StrokeJoin = SKStrokeJoin.Round };
        using var outline = stroke.GetFillPath(path);
        return path.Op(outline, SKPathOp.Union) ?? new SKPath(path);
    }

    public static SKPath Transformed(SKPath path, SKMatrix matrix)
    {
        var copy = new SKPath(path);
        copy.Transform(matrix);
        return copy;
    }
}
