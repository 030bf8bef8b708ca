using SkiaSharp;

namespace MedPeft.Data.Synthetic;

/// <summary>
/// Draws an axial contrast-enhanced abdominal CT slice (soft-tissue window) at the level of the
/// liver, spleen and kidneys. Gray levels follow Hounsfield units through a W400/L40 window:
/// air black, fat dark gray, fluid/cyst ~0.4, muscle ~0.5, enhancing liver ~0.62, renal cortex
/// and aorta bright, bone white. That is what separates it from the MRI (dark skull, bright
/// scalp) and the radiograph (projection with dark lungs).
/// </summary>
/// <remarks>Radiological convention: the patient's right (liver) is on the image left.</remarks>
internal static class AbdomenCt
{
    private const float Fat = 0.17f, Muscle = 0.5f, Liver = 0.62f, Cortex = 0.8f, Bone = 1f;

    /// <summary>Draws the study. <paramref name="rng"/> drives anatomy, pose and jitter; <paramref name="findingRng"/> only the findings (see <see cref="SyntheticImages.RenderGray"/>).</summary>
    public static void Render(GrayCanvas g, AbdomenFindings f, SynthRandom rng, SynthRandom findingRng)
    {
        var c = g.Canvas;
        c.Save();
        g.Jitter(rng.Range(-0.03, 0.03), rng.Range(-0.03, 0.03), rng.Range(-4, 4), rng.Range(0.93, 1.04));

        float bx = rng.Range(0.41, 0.45), by = rng.Range(0.29, 0.33);
        var body = new SKPoint(0.5f, 0.5f);
        DrawTable(g, body.Y + by);
        g.FillOval(body.X, body.Y, bx, by, 0.45f, blur: 0.003f);                   // skin
        g.FillOval(body.X, body.Y, bx - 0.008f, by - 0.008f, Fat);                  // subcutaneous fat
        using (var wall = g.Stroke(Muscle, 0.018f, blur: 0.003f))                   // abdominal wall muscles
            c.DrawOval(body.X, body.Y + 0.005f, bx - 0.045f, by - 0.04f, wall);

        DrawSpine(g, body, by);
        using var liver = LiverPath(body, bx, by, rng);
        g.FillPath(liver, Liver, blur: 0.004f);
        DrawSpleenAndStomach(g, body, bx, by, rng);
        DrawVessels(g, body, by);
        var kidneys = DrawKidneys(g, body, by, rng);
        DrawBowel(g, body, by, rng);

        if (f.LiverLesions > 0) DrawLiverLesions(g, liver, f.LiverLesions, findingRng);
        if (f.KidneyCyst is Side side) DrawCyst(g, kidneys[side == Side.Right ? 0 : 1], side, findingRng);

        c.Restore();
    }

    /// <summary>The CT couch: a curved bright line under the patient.</summary>
    private static void DrawTable(GrayCanvas g, float bottom)
    {
        using var table = Paths.Build(p =>
        {
            p.MoveTo(0.05f, bottom + 0.03f);
            p.QuadTo(0.5f, bottom + 0.1f, 0.95f, bottom + 0.03f);
        });
        g.StrokePath(table, 0.5f, 0.015f, alpha: 0.9f);
    }

    /// <summary>Vertebral body (cortex and marrow), spinal canal, posterior elements and paraspinal muscles.</summary>
    private static void DrawSpine(GrayCanvas g, SKPoint body, float by)
    {
        float y = SpineY(body, by);
        g.FillOval(body.X - 0.07f, y + 0.1f, 0.05f, 0.038f, Muscle, blur: 0.004f);     // erector spinae
        g.FillOval(body.X + 0.07f, y + 0.1f, 0.05f, 0.038f, Muscle, blur: 0.004f);
        g.FillOval(body.X - 0.065f, y + 0.01f, 0.03f, 0.04f, Muscle, blur: 0.004f);      // psoas
        g.FillOval(body.X + 0.065f, y + 0.01f, 0.03f, 0.04f, Muscle, blur: 0.004f);
        g.FillOval(body.X, y, 0.05f, 0.045f, Bone, blur: 0.003f);                          // cortex
        g.FillOval(body.X, y, 0.04f, 0.035f, 0.78f, blur: 0.004f);                         // cancellous bone
        using (var lamina = g.Stroke(0.9f, 0.011f, blur: 0.002f))
        {
            g.Canvas.DrawLine(body.X - 0.025f, y + 0.05f, body.X, y + 0.095f, lamina);
            g.Canvas.DrawLine(body.X + 0.025f, y + 0.05f, body.X, y + 0.095f, lamina);
            g.Canvas.DrawLine(body.X, y + 0.095f, body.X, y + 0.12f, lamina);           // spinous process
            g.Canvas.DrawLine(body.X - 0.03f, y + 0.05f, body.X - 0.065f, y + 0.045f, lamina); // transverse processes
            g.Canvas.DrawLine(body.X + 0.03f, y + 0.05f, body.X + 0.065f, y + 0.045f, lamina);
        }
        g.FillOval(body.X, y + 0.065f, 0.018f, 0.016f, 0.35f);                            // spinal canal
    }

    /// <summary>Centre height of the vertebral body: in the posterior third of the abdomen.</summary>
    private static float SpineY(SKPoint body, float by) => body.Y + 0.4f * by;

    /// <summary>The liver fills the right upper abdomen (image left), wrapping round from front to back.</summary>
    private static SKPath LiverPath(SKPoint body, float bx, float by, SynthRandom rng)
    {
        float l = body.X - bx + 0.05f, t = body.Y - by + 0.05f;
        float medial = body.X + rng.Range(0.0, 0.06);
        float back = body.Y + rng.Range(0.42, 0.55) * by;
        return Paths.Build(p =>
        {
            p.MoveTo(l + 0.02f, body.Y - 0.25f * by);
            p.CubicTo(l + 0.06f, t, medial - 0.05f, t - 0.01f, medial, t + 0.05f);
            p.CubicTo(medial + 0.02f, t + 0.1f, body.X - 0.05f, body.Y - 0.05f, body.X - 0.1f, body.Y + 0.05f);
            p.CubicTo(body.X - 0.12f, back, body.X - 0.2f, back + 0.02f, l + 0.04f, back);
            p.CubicTo(l - 0.01f, body.Y + 0.2f * by, l - 0.01f, body.Y - 0.05f, l + 0.02f, body.Y - 0.25f * by);
            p.Close();
        });
    }

    private static void DrawSpleenAndStomach(GrayCanvas g, SKPoint body, float bx, float by, SynthRandom rng)
    {
        var c = g.Canvas;
        // Spleen: posterolateral in the left upper abdomen (image right).
        c.Save();
        c.RotateDegrees(-35, body.X + bx * 0.72f, body.Y + 0.3f * by);
        g.FillOval(body.X + bx * 0.72f, body.Y + 0.3f * by, rng.Range(0.035, 0.05), rng.Range(0.08, 0.1), 0.6f, blur: 0.004f);
        c.Restore();
        // Stomach: anterior left, fluid contents with an air–fluid level (air rises anteriorly = up).
        var s = new SKPoint(body.X + bx * rng.Range(0.3, 0.42), body.Y - 0.35f * by);
        float rx = rng.Range(0.08, 0.11), ry = rng.Range(0.06, 0.08);
        using var stomach = Paths.Build(p => p.AddOval(new SKRect(s.X - rx, s.Y - ry, s.X + rx, s.Y + ry)));
        g.FillPath(stomach, 0.58f, blur: 0.003f);                                           // enhancing wall
        using var lumen = Paths.Build(p => p.AddOval(new SKRect(s.X - rx + 0.008f, s.Y - ry + 0.008f, s.X + rx - 0.008f, s.Y + ry - 0.008f)));
        g.FillPath(lumen, 0.38f);
        c.Save();
        c.ClipPath(lumen, SKClipOperation.Intersect, true);
        c.ClipRect(new SKRect(0, 0, 1, s.Y - ry * rng.Range(0.0, 0.4)));
        c.DrawColor(GrayCanvas.Gray(0.02f));
        c.Restore();
    }

    /// <summary>Aorta (left of the midline, bright with contrast) and inferior vena cava (right).</summary>
    private static void DrawVessels(GrayCanvas g, SKPoint body, float by)
    {
        float y = SpineY(body, by) - 0.07f;
        g.FillOval(body.X + 0.022f, y, 0.022f, 0.022f, 0.9f, blur: 0.002f);
        g.FillOval(body.X - 0.045f, y, 0.026f, 0.018f, 0.68f, blur: 0.002f);
    }

    /// <summary>Kidneys beside the spine: bright cortex, darker medulla, sinus fat facing the hilum. Returns their centres (right, left).</summary>
    private static SKPoint[] DrawKidneys(GrayCanvas g, SKPoint body, float by, SynthRandom rng)
    {
        var c = g.Canvas;
        var centres = new SKPoint[2];
        foreach (var side in new[] { Side.Right, Side.Left })
        {
            int s = side == Side.Left ? 1 : -1;
            var k = new SKPoint(body.X + s * rng.Range(0.14, 0.17), SpineY(body, by) + rng.Range(-0.01, 0.02));
            centres[side == Side.Right ? 0 : 1] = k;
            c.Save();
            c.RotateDegrees(s * rng.Range(-30, -15), k.X, k.Y);
            g.FillOval(k.X, k.Y, 0.045f, 0.06f, Cortex, blur: 0.003f);
            g.FillOval(k.X - s * 0.01f, k.Y, 0.026f, 0.04f, 0.55f, blur: 0.006f);     // medulla
            g.FillOval(k.X - s * 0.03f, k.Y, 0.014f, 0.02f, Fat, blur: 0.004f);       // sinus fat at the hilum
            c.Restore();
        }
        return centres;
    }

    /// <summary>Bowel loops in the anterior midabdomen: enhancing walls, fluid, a few gas bubbles.</summary>
    private static void DrawBowel(GrayCanvas g, SKPoint body, float by, SynthRandom rng)
    {
        int loops = rng.Between(5, 8);
        for (int i = 0; i < loops; i++)
        {
            var p = new SKPoint(body.X + rng.Range(-0.06, 0.2), body.Y + rng.Range(-0.3, 0.15) * by);
            float r = rng.Range(0.02, 0.032);
            g.FillOval(p.X, p.Y, r, r * rng.Range(0.8, 1.1), 0.55f, blur: 0.003f);
            g.FillOval(p.X, p.Y, r * 0.7f, r * 0.7f, rng.Chance(0.4) ? 0.03f : 0.4f, blur: 0.003f);
        }
    }

    /// <summary>Hypodense (dark) round liver lesions, well inside the liver.</summary>
    private static void DrawLiverLesions(GrayCanvas g, SKPath liver, int count, SynthRandom rng)
    {
        var bounds = liver.Bounds;
        var placed = new List<(SKPoint P, float R)>();
        for (int i = 0; i < count; i++)
        {
            float r = Math.Max(rng.Range(0.035, 0.055), 1.3f * g.Pixel);
            SKPoint p = new(bounds.MidX, bounds.MidY);
            for (int attempt = 0; attempt < 80; attempt++)
            {
                var q = new SKPoint(rng.Range(bounds.Left, bounds.Right), rng.Range(bounds.Top, bounds.Bottom));
                bool inside = liver.Contains(q.X, q.Y) && liver.Contains(q.X - r, q.Y) && liver.Contains(q.X + r, q.Y)
                    && liver.Contains(q.X, q.Y - r) && liver.Contains(q.X, q.Y + r);
                if (inside && placed.TrueForAll(o => SKPoint.Distance(q, o.P) > 1.5f * (r + o.R) + 0.01f))
                {
                    p = q;
                    break;
                }
            }
            placed.Add((p, r));
            g.FillOval(p.X, p.Y, r, r * rng.Range(0.85, 1.1), rng.Range(0.3, 0.4), blur: 0.15f * r);
        }
    }

    /// <summary>A simple renal cyst: round, water density, sharply marginated, bulging from the lateral cortex.</summary>
    private static void DrawCyst(GrayCanvas g, SKPoint kidney, Side side, SynthRandom rng)
    {
        int s = side == Side.Left ? 1 : -1;
        float r = Math.Max(rng.Range(0.035, 0.045), 1.4f * g.Pixel);
        var p = new SKPoint(kidney.X + s * rng.Range(0.025, 0.035), kidney.Y + rng.Range(-0.03, 0.03));
        g.FillOval(p.X, p.Y, r, r, 0.36f);
    }
}
