using System.IO.Compression;
using SkiaSharp;

namespace MedPeft.Tests.Data;

/// <summary>Small test images written byte-exactly: 8-bit RGB / gray PNG and JPEG through SkiaSharp, and PNGs SkiaSharp
/// cannot encode (16-bit grayscale, 8-bit grayscale colour type 0) written chunk by chunk (zlib IDAT + CRC-32).</summary>
public static class TestImages
{
    /// <summary>A deterministic colour pattern (gradients plus a bright square) of the given size.</summary>
    public static byte[] RgbPixels(int w, int h)
    {
        var rgb = new byte[w * h * 3];
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
            {
                int i = 3 * (y * w + x);
                bool square = x > w / 3 && x < w / 2 && y > h / 4 && y < h / 2;
                rgb[i] = (byte)(square ? 250 : x * 255 / Math.Max(1, w - 1));
                rgb[i + 1] = (byte)(y * 255 / Math.Max(1, h - 1));
                rgb[i + 2] = (byte)((x * 7 + y * 13) % 256);
            }
        return rgb;
    }

    public static string WriteRgb(string path, int w, int h, SKEncodedImageFormat format = SKEncodedImageFormat.Png, int quality = 100)
    {
        var rgb = RgbPixels(w, h);
        using var bmp = new SKBitmap(new SKImageInfo(w, h, SKColorType.Rgba8888, SKAlphaType.Opaque));
        var px = new byte[w * h * 4];
        for (int i = 0; i < w * h; i++) { px[4 * i] = rgb[3 * i]; px[4 * i + 1] = rgb[3 * i + 1]; px[4 * i + 2] = rgb[3 * i + 2]; px[4 * i + 3] = 255; }
        System.Runtime.InteropServices.Marshal.Copy(px, 0, bmp.GetPixels(), px.Length);
        using var data = bmp.Encode(format, quality);
        File.WriteAllBytes(path, data.ToArray());
        return path;
    }

    /// <summary>A grayscale PNG (colour type 0) of bit depth 8 or 16 with the given samples (row-major).</summary>
    public static string WriteGrayPng(string path, int w, int h, int bitDepth, Func<int, int, int> sample)
    {
        if (bitDepth is not (8 or 16)) throw new ArgumentException("bit depth 8 or 16");
        int bpp = bitDepth / 8;
        var raw = new byte[h * (1 + w * bpp)];
        for (int y = 0; y < h; y++)
        {
            int row = y * (1 + w * bpp);
            raw[row] = 0;   // filter: none
            for (int x = 0; x < w; x++)
            {
                int v = sample(x, y);
                if (bitDepth == 16) { raw[row + 1 + 2 * x] = (byte)(v >> 8); raw[row + 2 + 2 * x] = (byte)v; }   // big-endian
                else raw[row + 1 + x] = (byte)v;
            }
        }
        using var ms = new MemoryStream();
        ms.Write([0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A]);
        var ihdr = new byte[13];
        BigEndian(ihdr, 0, (uint)w); BigEndian(ihdr, 4, (uint)h);
        ihdr[8] = (byte)bitDepth; ihdr[9] = 0; ihdr[10] = 0; ihdr[11] = 0; ihdr[12] = 0;
        Chunk(ms, "IHDR", ihdr);
        using (var z = new MemoryStream())
        {
            using (var zs = new ZLibStream(z, CompressionLevel.Optimal, leaveOpen: true)) zs.Write(raw);
            Chunk(ms, "IDAT", z.ToArray());
        }
        Chunk(ms, "IEND", []);
        File.WriteAllBytes(path, ms.ToArray());
        return path;
    }

    static void Chunk(Stream s, string type, byte[] data)
    {
        var len = new byte[4]; BigEndian(len, 0, (uint)data.Length);
        s.Write(len);
        var typeBytes = System.Text.Encoding.ASCII.GetBytes(type);
        s.Write(typeBytes); s.Write(data);
        var crc = new byte[4]; BigEndian(crc, 0, Crc32([.. typeBytes, .. data]));
        s.Write(crc);
    }

    static void BigEndian(byte[] b, int at, uint v) { b[at] = (byte)(v >> 24); b[at + 1] = (byte)(v >> 16); b[at + 2] = (byte)(v >> 8); b[at + 3] = (byte)v; }

    /// <summary>PNG's CRC-32 (ISO-HDLC, reflected polynomial 0xEDB88320).</summary>
    static uint Crc32(byte[] data)
    {
        uint c = 0xFFFFFFFF;
        foreach (var b in data)
        {
            c ^= b;
            for (int k = 0; k < 8; k++) c = (c & 1) != 0 ? 0xEDB88320 ^ (c >> 1) : c >> 1;
        }
        return c ^ 0xFFFFFFFF;
    }
}
