using SkiaSharp;

namespace MedPeft.Data.Synthetic;

/// <summary>Which projection of a chest study to draw (only chest radiographs have a lateral view).</summary>
public enum SynthView
{
    Frontal,
    Lateral,
}

/// <summary>Renders a <see cref="SyntheticStudy"/> to pixels and to JPEG/PNG bytes.</summary>
public static class SyntheticImages
{
    /// <summary>
    /// Draws the study as <paramref name="size"/>×<paramref name="size"/> 8-bit gray pixels
    /// (row-major). Anatomy jitter, acquisition jitter and noise all come from <paramref name="rng"/>.
    /// </summary>
    public static byte[] RenderGray(SyntheticStudy study, int size, SynthRandom rng, SynthView view = SynthView.Frontal)
    {
        // Three independent streams: anatomy and pose, the findings, and acquisition. The same
        // seed therefore gives the same patient and noise with or without a finding, so the
        // finding is the only difference between the two images.
        var anatomy = new SynthRandom(rng.NextUInt64());
        var findings = new SynthRandom(rng.NextUInt64());
        var acquisition = new SynthRandom(rng.NextUInt64());
        using var g = new GrayCanvas(size);
        switch (study.Modality)
        {
            case SynthModality.ChestXray when view == SynthView.Lateral:
                ChestXrayLateral.Render(g, study.Chest!, anatomy, findings);
                break;
            case SynthModality.ChestXray:
                ChestXray.RenderFrontal(g, study.Chest!, anatomy, findings);
                break;
            case SynthModality.BrainMri:
                BrainMri.Render(g, study.Brain!, anatomy, findings);
                break;
            default:
                AbdomenCt.Render(g, study.Abdomen!, anatomy, findings);
                break;
        }
        var pixels = g.ReadPixels();
        // Exposure / window settings and quantum noise differ between acquisitions.
        var a = acquisition;
        float noise = study.Modality == SynthModality.BrainMri ? a.Range(0.015, 0.035) : a.Range(0.012, 0.03);
        Acquisition.Apply(pixels, a, a.Range(0.85, 1.15), a.Range(-0.05, 0.05), a.Range(0.85, 1.2), noise);
        return pixels;
    }

    /// <summary>The study as an RGB JPEG (SLAKE-style <c>source.jpg</c>).</summary>
    public static byte[] RenderJpeg(SyntheticStudy study, int size, SynthRandom rng, SynthView view = SynthView.Frontal) =>
        Acquisition.Encode(RenderGray(study, size, rng, view), size, SKEncodedImageFormat.Jpeg);

    /// <summary>The study as a grayscale PNG (IU-Xray-style <c>0.png</c> / <c>1.png</c>).</summary>
    public static byte[] RenderPng(SyntheticStudy study, int size, SynthRandom rng, SynthView view = SynthView.Frontal) =>
        Acquisition.Encode(RenderGray(study, size, rng, view), size, SKEncodedImageFormat.Png);
}
