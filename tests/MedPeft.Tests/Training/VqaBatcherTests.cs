using MedPeft.Data;
using MedPeft.Tests.Data;
using MedPeft.Training;
using static TorchSharp.torch;

namespace MedPeft.Tests.Training;

public class VqaBatcherTests
{
    [Fact]
    public void Training_batches_augment_per_epoch_and_evaluation_batches_never_do()
    {
        var dir = Directory.CreateTempSubdirectory("medpeft-vqab-").FullName;
        var vocab = Path.Combine(dir, "vocab.txt");
        BlipTokenizer.WriteVocabulary(["is", "there", "a", "nodule", "yes", "no"], vocab);
        var tok = new BlipTokenizer(vocab);
        var img = TestImages.WriteRgb(Path.Combine(dir, "a.png"), 48, 40);
        var samples = new[] { new VqaSample("1", img, "is there a nodule?", "yes", "CLOSED"), new VqaSample("2", img, "is there a nodule?", "no", "CLOSED") };
        using var cache = new ImageCache(new ImageProcessor(32, Normalization.Blip));
        var plain = new VqaBatcher(tok, cache);
        var augmented = new VqaBatcher(tok, cache) { Augmentation = Augmentation.Blip, AugmentationSeed = 5 };

        // Without augmentation the prepared path is the evaluation batch, bit for bit.
        var a = plain.Batch(plain.Prepare(samples, 0), CPU);
        var b = plain.Batch(samples, CPU);
        Assert.True(a.PixelValues.eq(b.PixelValues).all().item<bool>());
        Assert.True(a.InputIds.eq(b.InputIds).all().item<bool>());
        Assert.True(a.Labels!.eq(b.Labels!).all().item<bool>());

        var e0 = augmented.Batch(augmented.Prepare(samples, 0), CPU).PixelValues;
        var e0again = augmented.Batch(augmented.Prepare(samples, 0), CPU).PixelValues;
        var e1 = augmented.Batch(augmented.Prepare(samples, 1), CPU).PixelValues;
        Assert.True(e0.eq(e0again).all().item<bool>());
        Assert.False(e0.eq(e1).all().item<bool>());
        Assert.False(e0[0].eq(e0[1]).all().item<bool>());   // same file, different samples → different views
        // Evaluation through the augmenting batcher is still the plain image.
        Assert.True(augmented.Batch(samples, CPU, withLabels: false).PixelValues.eq(b.PixelValues).all().item<bool>());
    }
}
