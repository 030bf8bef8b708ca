using SkiaSharp;

namespace MedPeft.Data.Synthetic;

/// <summary>
/// Draws an axial T1-weighted, contrast-enhanced brain MRI slice at the level of the lateral
/// ventricles. On T1 fat is bright and cortical bone and CSF are dark, so the head reads
/// (outside in) as bright scalp, a dark skull ring with a thin bright marrow line, dark CSF,
/// gray cortex with sulci, brighter white matter and dark ventricles. Enhancing tumours are
/// bright (solid, or a ring around a dark necrotic core) within darker oedema.
/// </summary>
/// <remarks>Radiological convention as everywhere: the patient's left hemisphere is on the image right.</remarks>
internal static class BrainMri
{
    /// <summary>Draws the study. <paramref name="rng"/> drives anatomy, pose and jitter; <paramref name="findingRng"/> only the findings (see <see cref="SyntheticImages.RenderGray"/>).</summary>
    public static void Render(GrayCanvas g, BrainFindings f, SynthRandom rng, SynthRandom findingRng)
    {
        var c = g.Canvas;
        c.Save();
        g.Jitter(rng.Range(-0.03, 0.03), rng.Range(-0.03, 0.03), rng.Range(-6, 6), rng.Range(0.93, 1.04));

        var center = new SKPoint(0.5f, 0.5f);
        float rx = rng.Range(0.33, 0.37), ry = rng.Range(0.41, 0.45);
        g.FillOval(center.X, center.Y, rx, ry, 0.72f, blur: 0.006f);                     // scalp fat
        g.FillOval(center.X, center.Y, rx - 0.022f, ry - 0.022f, 0.07f, blur: 0.003f);    // cortical bone
        using (var marrow = g.Stroke(0.5f, 0.008f, alpha: 0.7f, blur: 0.003f))            // diploic marrow
            c.DrawOval(center.X, center.Y, rx - 0.031f, ry - 0.031f, marrow);
        g.FillOval(center.X, center.Y, rx - 0.042f, ry - 0.042f, 0.14f, blur: 0.003f);    // CSF

        float brx = rx - 0.05f, bry = ry - 0.05f;
        using var cortex = Gyral(center, brx, bry, rng, 0.014f);
        g.FillPath(cortex, 0.42f, blur: 0.003f);
        DrawSulci(g, center, brx, bry, rng);
        using (var white = Gyral(center, brx * 0.8f, bry * 0.82f, rng, 0.03f))
            g.FillPath(white, 0.62f, blur: 0.012f);
        DrawMidline(g, center, bry);
        DrawVentricles(g, center, brx, bry, rng);

        c.Save();
        c.ClipPath(cortex, SKClipOperation.Intersect, true);
        var placed = new List<SKPoint>();
        foreach (var side in f.Lesions)
            DrawTumour(g, side, center, brx, bry, placed, findingRng);
        c.Restore();

        c.Restore();
    }

    /// <summary>An ellipse whose radius ripples like gyri.</summary>
    private static SKPath Gyral(SKPoint c, float rx, float ry, SynthRandom rng, float ripple)
    {
        int k1 = rng.Between(18, 24), k2 = rng.Between(7, 11);
        float p1 = rng.Range(0, 6.283), p2 = rng.Range(0, 6.283);
        const int steps = 160;
        return Paths.Build(p =>
        {
            for (int i = 0; i <= steps; i++)
            {
                float t = i * 2 * MathF.PI / steps;
                float m = 1f + ripple * MathF.Sin(k1 * t + p1) + 0.5f * ripple * MathF.Sin(k2 * t + p2);
                var pt = new SKPoint(c.X + rx * m * MathF.Cos(t), c.Y + ry * m * MathF.Sin(t));
                if (i == 0) p.MoveTo(pt); else p.LineTo(pt);
            }
            p.Close();
        });
    }

    /// <summary>Dark CSF-filled sulci running in from the brain surface.</summary>
    private static void DrawSulci(GrayCanvas g, SKPoint c, float rx, float ry, SynthRandom rng)
    {
        using var paint = g.Stroke(0.14f, 0.006f, alpha: 0.6f, blur: 0.002f);
        int n = rng.Between(22, 30);
        for (int i = 0; i < n; i++)
        {
            float t = (i + rng.Range(0.2, 0.8)) * 2 * MathF.PI / n;
            var dir = new SKPoint(MathF.Cos(t), MathF.Sin(t));
            var outer = new SKPoint(c.X + rx * 1.01f * dir.X, c.Y + ry * 1.01f * dir.Y);
            float depth = rng.Range(0.025, 0.06);
            var inner = new SKPoint(outer.X - dir.X * depth + rng.Range(-0.01, 0.01), outer.Y - dir.Y * depth + rng.Range(-0.01, 0.01));
            g.Canvas.DrawLine(outer, inner, paint);
        }
    }

    /// <summary>Interhemispheric fissure (falx) front and back.</summary>
    private static void DrawMidline(GrayCanvas g, SKPoint c, float ry)
    {
        using var paint = g.Stroke(0.14f, 0.008f, alpha: 0.8f, blur: 0.002f);
        g.Canvas.DrawLine(c.X, c.Y - ry * 1.02f, c.X, c.Y - ry * 0.42f, paint);
        g.Canvas.DrawLine(c.X, c.Y + ry * 0.5f, c.X, c.Y + ry * 1.02f, paint);
    }

    /// <summary>Lateral ventricles: two dark curved horns either side of the midline, with bright choroid plexus.</summary>
    private static void DrawVentricles(GrayCanvas g, SKPoint c, float rx, float ry, SynthRandom rng)
    {
        float size = rng.Range(0.85, 1.2);
        using var csf = g.Stroke(0.1f, 0.032f * size, blur: 0.004f);
        foreach (int s in new[] { -1, 1 })
        {
            using var horn = Paths.Build(p =>
            {
                // Frontal horn near the midline, parallel body, atrium and occipital horn diverging backwards.
                p.MoveTo(c.X + s * 0.05f * size, c.Y - 0.42f * ry);
                p.CubicTo(c.X + s * 0.035f * size, c.Y - 0.2f * ry, c.X + s * 0.05f * size, c.Y + 0.1f * ry, c.X + s * 0.075f * size, c.Y + 0.22f * ry);
                p.QuadTo(c.X + s * 0.095f * size, c.Y + 0.32f * ry, c.X + s * 0.08f * size, c.Y + 0.45f * ry);
            });
            g.Canvas.DrawPath(horn, csf);
            g.FillOval(c.X + s * 0.08f * size, c.Y + 0.27f * ry, 0.01f, 0.016f, 0.75f, alpha: 0.8f, blur: 0.004f);
        }
    }

    /// <summary>
    /// An enhancing tumour in the given hemisphere, away from the midline and the ventricles,
    /// surrounded by hypointense oedema; solid or ring-enhancing with a necrotic core.
    /// </summary>
    private static void DrawTumour(GrayCanvas g, Side side, SKPoint c, float rx, float ry, List<SKPoint> placed, SynthRandom rng)
    {
        float r = Math.Max(rng.Range(0.04, 0.07), 1.6f * g.Pixel);
        SKPoint p = default;
        for (int attempt = 0; attempt < 60; attempt++)
        {
            // Image right is the patient's left.
            float dx = rng.Range(0.42, 0.72) * rx * (side == Side.Left ? 1 : -1);
            float dy = rng.Range(-0.6, 0.6) * ry;
            p = new SKPoint(c.X + dx, c.Y + dy);
            if (placed.TrueForAll(q => SKPoint.Distance(p, q) > 3.2f * r)) break;
        }
        placed.Add(p);
        g.FillOval(p.X, p.Y, 1.8f * r, 1.6f * r, 0.3f, alpha: 0.85f, blur: 0.3f * r);  // oedema
        if (rng.Chance(0.5))
        {
            g.FillOval(p.X, p.Y, r, r * rng.Range(0.85, 1.1), 0.93f, blur: 0.12f * r);     // solid enhancement
        }
        else
        {
            g.FillOval(p.X, p.Y, r, r * rng.Range(0.85, 1.1), 0.95f, blur: 0.1f * r);      // enhancing rim
            g.FillOval(p.X, p.Y, 0.55f * r, 0.55f * r, 0.25f, blur: 0.12f * r);            // necrotic core
        }
    }
}
