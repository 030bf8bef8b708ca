using System.Security.Cryptography;
using MedPeft.Data;
using SkiaSharp;

namespace MedPeft.Tests.Data;

public class ImageProcessorTests
{
    static string Temp() => Directory.CreateTempSubdirectory("medpeft-img-").FullName;

    static string Hash(float[] x)
    {
        var bytes = new byte[x.Length * 4];
        Buffer.BlockCopy(x, 0, bytes, 0, bytes.Length);
        return Convert.ToHexString(SHA256.HashData(bytes))[..16];
    }

    static float[] Values(TorchSharp.torch.Tensor t) => t.data<float>().ToArray();

    [Fact]
    public void Evaluation_path_is_bit_identical_to_the_recorded_output()
    {
        var dir = Temp();
        var png = TestImages.WriteRgb(Path.Combine(dir, "a.png"), 50, 37);
        var p = new ImageProcessor(32, Normalization.Blip);
        using var t = p.Load(png);
        Assert.Equal([3L, 32, 32], t.shape);
        Assert.Equal("04FFBAD81BF87152", Hash(Values(t)));
        var jpg = TestImages.WriteRgb(Path.Combine(dir, "a.jpg"), 50, 37, SKEncodedImageFormat.Jpeg, 90);
        using var j = p.Load(jpg);
        Assert.Equal("A942AC5EDF0AAA05", Hash(Values(j)));
        var gray = TestImages.WriteGrayPng(Path.Combine(dir, "g.png"), 40, 30, 8, (x, y) => (x * 6 + y) % 256);
        using var g = p.Load(gray);
        Assert.Equal("BE2603B078D02430", Hash(Values(g)));
    }

    static float At(float[] x, int size, int c, int px, int py) => x[c * size * size + py * size + px];

    [Fact]
    public void Sixteen_bit_grayscale_png_keeps_its_range_as_the_high_byte_on_all_three_channels()
    {
        var dir = Temp();
        int[] values = [0, 255, 256, 383, 32768, 40000, 65280, 65535];
        var path = TestImages.WriteGrayPng(Path.Combine(dir, "g16.png"), 8, 8, 16, (x, y) => values[x]);
        var p = new ImageProcessor(8, Normalization.Unit);   // same size: the bicubic resize is the identity
        var px = p.Pixels(path);
        for (int x = 0; x < 8; x++)
            for (int c = 0; c < 3; c++)
                Assert.Equal((values[x] >> 8) / 255f, At(px, 8, c, x, 5), 6);
        // Not PIL's clipping: 32768 would be 255 (white) there.
        Assert.Equal(128 / 255f, At(px, 8, 0, 4, 0), 6);
    }

    [Fact]
    public void Eight_bit_gray_and_rgb_png_decode_exactly_and_jpeg_closely()
    {
        var dir = Temp();
        var gray = TestImages.WriteGrayPng(Path.Combine(dir, "g8.png"), 16, 16, 8, (x, y) => x * 16 + y);
        var p = new ImageProcessor(16, Normalization.Unit);
        var g = p.Pixels(gray);
        for (int y = 0; y < 16; y++)
            for (int x = 0; x < 16; x++)
                for (int c = 0; c < 3; c++) Assert.Equal((x * 16 + y) / 255f, At(g, 16, c, x, y), 6);

        var rgb = TestImages.RgbPixels(16, 16);
        var png = p.Pixels(TestImages.WriteRgb(Path.Combine(dir, "c.png"), 16, 16));
        var jpg = p.Pixels(TestImages.WriteRgb(Path.Combine(dir, "c.jpg"), 16, 16, SKEncodedImageFormat.Jpeg, 95));
        double jpegError = 0;
        for (int i = 0; i < 256; i++)
            for (int c = 0; c < 3; c++)
            {
                Assert.Equal(rgb[3 * i + c] / 255f, png[c * 256 + i], 6);
                jpegError += Math.Abs(rgb[3 * i + c] / 255.0 - jpg[c * 256 + i]);
            }
        Assert.InRange(jpegError / (3 * 256), 0, 0.03);   // lossy, but the same picture
    }

    [Fact]
    public void Augmentation_is_deterministic_per_seed_epoch_and_sample_and_differs_across_epochs()
    {
        var dir = Temp();
        var png = TestImages.WriteRgb(Path.Combine(dir, "a.png"), 60, 45);
        var p = new ImageProcessor(32, Normalization.Blip);
        var a = p.Pixels(png, Augmentation.Blip, seed: 7, epoch: 0, sampleKey: "s1");
        var b = p.Pixels(png, Augmentation.Blip, seed: 7, epoch: 0, sampleKey: "s1");
        Assert.Equal(Hash(a), Hash(b));
        Assert.NotEqual(Hash(a), Hash(p.Pixels(png, Augmentation.Blip, 7, 1, "s1")));
        Assert.NotEqual(Hash(a), Hash(p.Pixels(png, Augmentation.Blip, 8, 0, "s1")));
        Assert.NotEqual(Hash(a), Hash(p.Pixels(png, Augmentation.Blip, 7, 0, "s2")));
        Assert.NotEqual(Hash(a), Hash(p.Pixels(png)));
        // From another thread too (the prefetcher): same pixels.
        var c = Task.Run(() => p.Pixels(png, Augmentation.Blip, 7, 0, "s1")).Result;
        Assert.Equal(Hash(a), Hash(c));
    }

    [Fact]
    public void Without_crop_or_rotation_the_augmented_path_matches_the_plain_resize()
    {
        var dir = Temp();
        var png = TestImages.WriteRgb(Path.Combine(dir, "sq.png"), 40, 40);
        var p = new ImageProcessor(20, Normalization.Unit);
        var identity = new Augmentation(MinScale: 1, MaxScale: 1, MinRatio: 1, MaxRatio: 1, MaxRotationDegrees: 0);
        var plain = p.Pixels(png);
        var aug = p.Pixels(png, identity, 1, 0, "x");
        Assert.InRange(plain.Zip(aug, (x, y) => Math.Abs(x - y)).Average(), 0, 0.01);
    }

    [Fact]
    public void Random_resized_crop_follows_torchvision_get_params()
    {
        var aug = Augmentation.Blip with { MaxRotationDegrees = 0 };
        var rng = new Random(1);
        for (int i = 0; i < 200; i++)
        {
            var (x, y, w, h) = aug.Crop(120, 90, rng);
            Assert.True(x >= 0 && y >= 0 && x + w <= 120 && y + h <= 90);
            double share = (double)w * h / (120 * 90);
            Assert.InRange(share, 0.45, 1.0);   // scale (0.5, 1) up to rounding; ratio in [3/4, 4/3]
            Assert.InRange((double)w / h, 0.7, 1.4);
        }
        // No box can fit with ratio ≥ 3 on a square: torchvision's fallback, a centre crop clamped to the ratio range.
        var wide = new Augmentation(MinRatio: 3, MaxRatio: 4);
        Assert.Equal((0, 33, 100, 33), wide.Crop(100, 100, new Random(2)));
        // Scale 1 on a 4:3 image: a fitting box or the fallback, either way the whole image.
        Assert.Equal((0, 0, 20, 15), new Augmentation(MinScale: 1, MaxScale: 1).Crop(20, 15, new Random(3)));
        // A 1:2 strip: no box fits, the fallback keeps the full width and takes the height from the min ratio.
        Assert.Equal((0, 3, 10, 13), new Augmentation(MinScale: 1, MaxScale: 1).Crop(10, 20, new Random(4)));
    }
}
