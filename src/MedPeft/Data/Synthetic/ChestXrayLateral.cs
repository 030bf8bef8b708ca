using SkiaSharp;

namespace MedPeft.Data.Synthetic;

/// <summary>
/// Draws the lateral chest radiograph of a study (the second IU-Xray view, <c>1.png</c>): the
/// patient faces image left, so anterior is left and the spine runs down the right side. Both
/// lungs overlap into one dark field; the heart sits anteriorly on the diaphragm; the posterior
/// costophrenic sulci are the deepest point, which is where an effusion shows first.
/// </summary>
internal static class ChestXrayLateral
{
    /// <summary>Draws the study. <paramref name="rng"/> drives anatomy, pose and jitter; <paramref name="findingRng"/> only the findings (see <see cref="SyntheticImages.RenderGray"/>).</summary>
    public static void Render(GrayCanvas g, ChestFindings f, SynthRandom rng, SynthRandom findingRng)
    {
        var c = g.Canvas;
        c.Save();
        g.Jitter(rng.Range(-0.03, 0.03), rng.Range(-0.03, 0.03), rng.Range(-4, 4), rng.Range(0.94, 1.04));

        float b = rng.Range(0.73, 0.79);                  // depth of the posterior sulcus
        float front = rng.Range(0.25, 0.29), back = rng.Range(0.74, 0.78);
        DrawBody(g, front, back);
        using var lung = LungPath(front, back, b);
        using (var paint = GrayCanvas.RadialFill(new SKPoint(0.52f, 0.45f), 0.4f, 0.27f, 0.12f, blur: 0.008f))
            c.DrawPath(lung, paint);
        DrawMarkings(g, lung, rng);
        if (f.Pneumothorax is not null) DrawPneumothorax(g, lung, front, findingRng);
        DrawHilumAndAirway(g);
        DrawRibs(g, front, back, rng);
        DrawHeart(g, front, b, f.Cardiomegaly, rng);
        DrawSpineAndSternum(g, front, back);
        if (f.Effusion is not null) DrawEffusion(g, lung, front, back, b, findingRng);
        if (f.Nodules > 0) DrawNodules(g, f, b, findingRng);
        g.FillOval(front + 0.1f, b - 0.02f, 0.04f, 0.025f, 0.2f, alpha: 0.5f, blur: 0.01f); // gastric air under the diaphragm

        c.Restore();
    }

    private static void DrawBody(GrayCanvas g, float front, float back)
    {
        using var body = Paths.Build(p =>
        {
            p.MoveTo(0.36f, -0.05f);
            p.CubicTo(0.34f, 0.06f, front - 0.06f, 0.1f, front - 0.07f, 0.3f);
            p.CubicTo(front - 0.09f, 0.6f, front - 0.08f, 0.85f, front - 0.05f, 1.1f);
            p.LineTo(back + 0.12f, 1.1f);
            p.CubicTo(back + 0.13f, 0.7f, back + 0.12f, 0.3f, back + 0.06f, 0.1f);
            p.CubicTo(back + 0.02f, 0.0f, 0.7f, -0.03f, 0.66f, -0.05f);
            p.Close();
        });
        using var paint = GrayCanvas.LinearFill(new SKPoint(0.5f, 0.1f), new SKPoint(0.5f, 0.95f), 0.4f, 0.58f, blur: 0.015f);
        g.Canvas.DrawPath(body, paint);
        // Shoulders and arms overlap the upper chest on a lateral film.
        g.FillOval(0.52f, 0.08f, 0.2f, 0.12f, 0.8f, alpha: 0.25f, blur: 0.04f);
    }

    /// <summary>Faint vessel shadows radiating from the hilum.</summary>
    private static void DrawMarkings(GrayCanvas g, SKPath lung, SynthRandom rng)
    {
        g.Canvas.Save();
        g.Canvas.ClipPath(lung, SKClipOperation.Intersect, true);
        var hilum = new SKPoint(0.54f, 0.44f);
        int n = rng.Between(9, 12);
        for (int i = 0; i < n; i++)
        {
            float a = (i + rng.Range(0.2, 0.8)) * 2 * MathF.PI / n;
            float len = rng.Range(0.12, 0.25);
            var end = new SKPoint(hilum.X + len * MathF.Cos(a), hilum.Y + len * MathF.Sin(a));
            var ctrl = new SKPoint((hilum.X + end.X) / 2 + rng.Range(-0.03, 0.03), (hilum.Y + end.Y) / 2 + rng.Range(-0.03, 0.03));
            using var vessel = Paths.Build(p => { p.MoveTo(hilum); p.QuadTo(ctrl, end); });
            g.StrokePath(vessel, 0.95f, 0.008f, alpha: 0.14f, blur: 0.005f);
        }
        g.Canvas.Restore();
    }

    /// <summary>Ribs run obliquely, from high at the back to low at the front.</summary>
    private static void DrawRibs(GrayCanvas g, float front, float back, SynthRandom rng)
    {
        using var rib = g.Stroke(1f, 0.018f, alpha: 0.08f, blur: 0.005f);
        rib.BlendMode = SKBlendMode.Screen;
        for (int i = 0; i < 8; i++)
        {
            float y = 0.12f + i * 0.075f + rng.Range(-0.01, 0.01);
            using var path = Paths.Build(p =>
            {
                p.MoveTo(back + 0.02f, y);
                p.QuadTo(0.55f, y + 0.02f, front + 0.02f, y + 0.14f);
            });
            g.Canvas.DrawPath(path, rib);
        }
    }

    /// <summary>Both lungs as one field: retrosternal space in front, domes below, deep posterior sulcus behind.</summary>
    private static SKPath LungPath(float front, float back, float b) => Paths.Build(p =>
    {
        p.MoveTo(0.5f, 0.09f);
        p.CubicTo(0.38f, 0.1f, front, 0.2f, front + 0.01f, 0.4f);
        p.CubicTo(front + 0.015f, 0.55f, front + 0.02f, b - 0.1f, front + 0.04f, b - 0.07f);
        p.CubicTo(0.4f, b - 0.16f, 0.6f, b - 0.16f, back - 0.01f, b);
        p.CubicTo(back + 0.01f, b - 0.2f, back, 0.3f, back - 0.04f, 0.2f);
        p.CubicTo(back - 0.08f, 0.1f, 0.6f, 0.08f, 0.5f, 0.09f);
        p.Close();
    });

    private static void DrawHilumAndAirway(GrayCanvas g)
    {
        using var trachea = Paths.Build(p =>
        {
            p.MoveTo(0.46f, -0.05f);
            p.QuadTo(0.48f, 0.2f, 0.53f, 0.38f);
        });
        g.StrokePath(trachea, 0.25f, 0.04f, alpha: 0.4f, blur: 0.008f);
        g.FillOval(0.54f, 0.44f, 0.05f, 0.06f, 0.9f, alpha: 0.18f, blur: 0.02f);
    }

    /// <summary>The heart rests on the anterior diaphragm behind the sternum; enlarged it fills the retrosternal space and reaches back.</summary>
    private static void DrawHeart(GrayCanvas g, float front, float b, bool enlarged, SynthRandom rng)
    {
        float rx = enlarged ? rng.Range(0.17, 0.2) : rng.Range(0.12, 0.14);
        float ry = enlarged ? rng.Range(0.12, 0.14) : rng.Range(0.09, 0.11);
        float cx = front + 0.02f + rx * 0.8f, cy = b - 0.08f - ry * 0.3f;
        g.Canvas.Save();
        g.Canvas.RotateDegrees(-35, cx, cy);
        g.FillOval(cx, cy, rx, ry, 0.56f, blur: 0.014f);
        g.Canvas.Restore();
    }

    private static void DrawSpineAndSternum(GrayCanvas g, float front, float back)
    {
        using var bone = g.Fill(1f, alpha: 0.16f, blur: 0.006f);
        bone.BlendMode = SKBlendMode.Screen;
        // Thoracic kyphosis: vertebral bodies sit further back in the mid chest.
        for (float y = 0.0f; y < 1.05f; y += 0.07f)
        {
            float x = back + 0.02f + 0.03f * MathF.Sin(MathF.PI * Math.Clamp(y, 0f, 1f));
            g.Canvas.DrawRoundRect(new SKRect(x - 0.045f, y, x + 0.045f, y + 0.055f), 0.01f, 0.01f, bone);
        }
        using var sternum = g.Stroke(1f, 0.025f, alpha: 0.2f, blur: 0.005f);
        sternum.BlendMode = SKBlendMode.Screen;
        g.Canvas.DrawLine(front - 0.035f, 0.18f, front - 0.025f, 0.62f, sternum);
    }

    /// <summary>Fluid collects in the posterior sulcus: white, with a meniscus rising towards the back.</summary>
    private static void DrawEffusion(GrayCanvas g, SKPath lung, float front, float back, float b, SynthRandom rng)
    {
        float height = rng.Range(0.16, 0.26);
        using var fluid = Paths.Build(p =>
        {
            p.MoveTo(front, b - 0.06f);
            p.QuadTo(0.55f, b - 0.05f, back + 0.05f, b - height);
            p.LineTo(back + 0.05f, 1.1f);
            p.LineTo(front, 1.1f);
            p.Close();
        });
        using var space = Paths.Dilate(lung, 0.012f);
        g.Canvas.Save();
        g.Canvas.ClipPath(space, SKClipOperation.Intersect, true);
        using var paint = g.Fill(0.64f, blur: 0.014f);
        paint.BlendMode = SKBlendMode.Lighten;
        g.Canvas.DrawPath(fluid, paint);
        g.Canvas.Restore();
    }

    /// <summary>Apical pneumothorax: air without markings over the apex above a thin pleural line.</summary>
    private static void DrawPneumothorax(GrayCanvas g, SKPath lung, float front, SynthRandom rng)
    {
        float depth = rng.Range(0.1, 0.16);
        using var edge = Paths.Build(p =>
        {
            p.MoveTo(front - 0.05f, 0.12f + depth);
            p.QuadTo(0.5f, 0.09f + 1.6f * depth, 0.85f, 0.14f + depth);
        });
        using var air = Paths.Build(p =>
        {
            p.MoveTo(front - 0.05f, 0.12f + depth);
            p.QuadTo(0.5f, 0.09f + 1.6f * depth, 0.85f, 0.14f + depth);
            p.LineTo(0.85f, -0.1f);
            p.LineTo(front - 0.05f, -0.1f);
            p.Close();
        });
        g.Canvas.Save();
        g.Canvas.ClipPath(lung, SKClipOperation.Intersect, true);
        g.FillPath(air, 0.04f);
        g.StrokePath(edge, 0.92f, 0.006f, alpha: 0.8f);
        g.Canvas.Restore();
    }

    /// <summary>Nodules project over the mid lung at the height of their zone (a lateral view cannot show the side).</summary>
    private static void DrawNodules(GrayCanvas g, ChestFindings f, float b, SynthRandom rng)
    {
        (float y0, float y1) = f.NoduleZone == LungZone.Upper ? (0.24f, 0.4f) : (0.46f, b - 0.2f);
        for (int i = 0; i < f.Nodules; i++)
        {
            float r = Math.Max(rng.Range(0.017, 0.03), 1.2f * g.Pixel);
            using var paint = g.Fill(1f, alpha: rng.Range(0.5, 0.65), blur: 0.25f * r);
            paint.BlendMode = SKBlendMode.Screen;
            g.Canvas.DrawCircle(rng.Range(0.4, 0.68), rng.Range(y0, y1), r, paint);
        }
    }
}
