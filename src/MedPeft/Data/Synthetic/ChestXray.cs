using SkiaSharp;

namespace MedPeft.Data.Synthetic;

/// <summary>
/// Draws chest radiographs: a frontal (PA) view and, for the report set, a lateral view of the
/// same findings. X-ray images are projections, so overlapping structures add up: nodules,
/// ribs and effusions are drawn with brightening blend modes (Screen / Lighten) instead of
/// covering what lies behind them.
/// </summary>
/// <remarks>
/// Radiological convention: the patient's RIGHT lung is on the IMAGE LEFT. All geometry below
/// is written for the patient's right side (image left, x &lt; 0.5) and mirrored with
/// <see cref="Anatomy.X"/> for the left side. Coordinates are normalised to [0, 1].
/// </remarks>
internal static class ChestXray
{
    /// <summary>Per-image anatomy: thorax size, diaphragm height, heart size.</summary>
    private sealed record Anatomy(float HalfWidth, float BaseRight, float BaseLeft, float HeartWidth, float Medial, Side? Pneumothorax, float Collapse)
    {
        /// <summary>Maps an x written for the patient's right (image left) to the given side.</summary>
        public static float X(Side side, float xForRight) => side == Side.Right ? xForRight : 1f - xForRight;

        public float Base(Side side) => side == Side.Right ? BaseRight : BaseLeft;

        public SKPoint Hilum(Side side) => new(X(side, 0.5f - 0.27f * HalfWidth), 0.46f);

        /// <summary>
        /// How a lung with a pneumothorax collapses: towards a point on its medial border,
        /// more from the chest wall and apex than from the base (upright patient). Identity otherwise.
        /// </summary>
        public SKMatrix Collapsing(Side side) => Pneumothorax == side
            ? SKMatrix.CreateScale(1f - Collapse, 1f - 0.55f * Collapse, X(side, Medial), 0.62f)
            : SKMatrix.Identity;
    }

    private static Anatomy SampleAnatomy(ChestFindings f, SynthRandom rng)
    {
        float halfWidth = rng.Range(0.33, 0.37);
        float baseRight = rng.Range(0.73, 0.79);
        // The left hemidiaphragm normally sits a little lower than the right (the liver pushes the right up).
        float baseLeft = baseRight + rng.Range(0.01, 0.035);
        // Cardiothoracic ratio: ≤ 0.47 is normal; cardiomegaly is drawn clearly enlarged (0.60–0.70).
        float ctr = f.Cardiomegaly ? rng.Range(0.60, 0.70) : rng.Range(0.38, 0.47);
        float collapse = rng.Range(0.28, 0.45);
        return new Anatomy(halfWidth, baseRight, baseLeft, ctr * 2f * halfWidth, 0.5f - rng.Range(0.05, 0.06), f.Pneumothorax, collapse);
    }

    /// <summary>Draws the study. <paramref name="rng"/> drives anatomy, pose and jitter; <paramref name="findingRng"/> only the findings (see <see cref="SyntheticImages.RenderGray"/>).</summary>
    public static void RenderFrontal(GrayCanvas g, ChestFindings f, SynthRandom rng, SynthRandom findingRng)
    {
        var a = SampleAnatomy(f, rng);
        var c = g.Canvas;
        c.Save();
        g.Jitter(rng.Range(-0.03, 0.03), rng.Range(-0.03, 0.03), rng.Range(-4, 4), rng.Range(0.94, 1.04));

        DrawBody(g, a);
        foreach (var side in new[] { Side.Right, Side.Left })
        {
            using var lung = LungPath(side, a);
            DrawLungField(g, side, a, lung, rng);
            if (f.Pneumothorax == side) DrawPneumothorax(g, side, a, lung);
        }
        // Ribs before the mediastinum and heart, which are dense enough to hide them.
        DrawRibs(g, a, rng);
        DrawMediastinum(g, a);
        DrawHeart(g, a, rng);
        DrawSpine(g);
        foreach (var side in new[] { Side.Right, Side.Left })
        {
            if (f.Effusion != side) continue;
            using var lung = LungPath(side, a);
            DrawEffusion(g, side, a, lung, findingRng);
        }
        if (f.Nodules > 0) DrawNodules(g, f, a, findingRng);
        DrawGastricBubble(g, a, rng);

        c.Restore();
    }

    private static void DrawBody(GrayCanvas g, Anatomy a)
    {
        float side = a.HalfWidth + 0.08f;
        float l = 0.5f - side, r = 0.5f + side;
        // Arms hang beside the chest, separated from it by a darker gap.
        g.FillOval(l - 0.07f, 0.62f, 0.06f, 0.5f, 0.3f, blur: 0.02f);
        g.FillOval(r + 0.07f, 0.62f, 0.06f, 0.5f, 0.3f, blur: 0.02f);
        // Trunk: neck, sloping shoulders, lateral chest walls. Soft tissue gets brighter
        // towards the abdomen (thicker body, no air).
        using var body = Paths.Build(p =>
        {
            p.MoveTo(0.41f, -0.05f);
            p.LineTo(0.405f, 0.05f);
            p.CubicTo(0.3f, 0.08f, l - 0.02f, 0.09f, l - 0.06f, 0.17f);
            p.CubicTo(l - 0.06f, 0.3f, l - 0.01f, 0.4f, l, 0.55f);
            p.CubicTo(l + 0.005f, 0.8f, l + 0.01f, 0.95f, l + 0.02f, 1.1f);
            p.LineTo(r - 0.02f, 1.1f);
            p.CubicTo(r - 0.01f, 0.95f, r - 0.005f, 0.8f, r, 0.55f);
            p.CubicTo(r + 0.01f, 0.4f, r + 0.06f, 0.3f, r + 0.06f, 0.17f);
            p.CubicTo(r + 0.02f, 0.09f, 0.7f, 0.08f, 0.595f, 0.05f);
            p.LineTo(0.59f, -0.05f);
            p.Close();
        });
        using var paint = GrayCanvas.LinearFill(new SKPoint(0.5f, 0.1f), new SKPoint(0.5f, 0.95f), 0.36f, 0.56f, blur: 0.015f);
        g.Canvas.DrawPath(body, paint);
        // Humeral heads at the shoulders.
        using var bone = g.Fill(1f, alpha: 0.22f, blur: 0.012f);
        bone.BlendMode = SKBlendMode.Screen;
        g.Canvas.DrawCircle(l - 0.05f, 0.2f, 0.055f, bone);
        g.Canvas.DrawCircle(r + 0.05f, 0.2f, 0.055f, bone);
    }

    /// <summary>
    /// One lung field: apex, lateral chest wall, deep sharp costophrenic angle, diaphragm dome
    /// rising medially, straight medial border along the mediastinum.
    /// </summary>
    private static SKPath LungPath(Side s, Anatomy a)
    {
        float w = a.HalfWidth, b = a.Base(s), m = a.Medial;
        SKPoint P(float x, float y) => new(Anatomy.X(s, x), y);
        return Paths.Build(p =>
        {
            p.MoveTo(P(0.5f - 0.42f * w, 0.11f));
            p.CubicTo(P(0.5f - 0.78f * w, 0.10f), P(0.5f - 0.97f * w, 0.25f), P(0.5f - w, 0.45f));
            p.CubicTo(P(0.5f - 1.02f * w, 0.60f), P(0.5f - 0.99f * w, b - 0.08f), P(0.5f - 0.95f * w, b));
            p.CubicTo(P(0.5f - 0.80f * w, b - 0.10f), P(0.5f - 0.35f * w, b - 0.12f), P(m, b - 0.06f));
            p.LineTo(P(m, 0.40f));
            p.CubicTo(P(m, 0.24f), P(0.5f - 0.28f * w, 0.11f), P(0.5f - 0.42f * w, 0.11f));
            p.Close();
        });
    }

    private static void DrawLungField(GrayCanvas g, Side s, Anatomy a, SKPath lung, SynthRandom rng)
    {
        var c = g.Canvas;
        var hilum = a.Hilum(s);
        // Air-filled lung is dark; the lateral periphery darkest, the hilum brighter (vessels).
        using (var paint = GrayCanvas.RadialFill(hilum, 0.42f, 0.25f, 0.1f, blur: 0.006f))
            c.DrawPath(lung, paint);

        c.Save();
        c.ClipPath(lung, SKClipOperation.Intersect, true);
        // A lung with a pneumothorax keeps its markings inside the collapsed lung only.
        c.SetMatrix(c.TotalMatrix.PreConcat(a.Collapsing(s)));
        // Hilar vessels, then lung markings fanning out from along the hilum to the chest wall.
        g.FillOval(hilum.X, hilum.Y, 0.03f, 0.06f, 0.9f, alpha: 0.25f, blur: 0.015f);
        float lateral = s == Side.Right ? 180f : 0f;
        int branches = rng.Between(8, 11);
        var tree = new VesselTree();
        for (int i = 0; i < branches; i++)
        {
            // Angles fan from ~70° above to ~65° below the horizontal.
            float t = (i + rng.Range(0.2, 0.8)) / branches;
            float deg = lateral + (s == Side.Right ? 1 : -1) * (-70f + 135f * t);
            var start = new SKPoint(hilum.X, hilum.Y + rng.Range(-0.06, 0.06));
            AddVessel(tree, start, deg, rng.Range(0.18, 0.3), rng, depth: 0);
        }
        tree.Draw(g);
        c.Restore();
    }

    /// <summary>
    /// Vessel segments collected per branching generation, so each generation is stroked once
    /// (hundreds of separate strokes would dominate the rendering time).
    /// </summary>
    private sealed class VesselTree
    {
        public const int Generations = 3;
        private readonly SKPathBuilder[] _thin = [new(), new(), new()];
        private readonly SKPathBuilder[] _wide = [new(), new(), new()];

        public void Add(int depth, SKPoint from, SKPoint ctrl, SKPoint end, SKPoint mid)
        {
            _thin[depth].MoveTo(from);
            _thin[depth].QuadTo(ctrl, end);
            _wide[depth].MoveTo(from);
            _wide[depth].LineTo(mid);
        }

        /// <summary>Each generation is thinner and fainter; the wider proximal half gives the taper.</summary>
        public void Draw(GrayCanvas g)
        {
            float width = 0.011f, alpha = 0.16f;
            for (int d = 0; d < Generations; d++)
            {
                using (var thin = _thin[d].Detach()) g.StrokePath(thin, 0.95f, width * 0.6f, alpha, blur: width * 0.4f);
                using (var wide = _wide[d].Detach()) g.StrokePath(wide, 0.95f, width, alpha * 0.6f, blur: width * 0.4f);
                _thin[d].Dispose();
                _wide[d].Dispose();
                width *= 0.65f;
                alpha *= 0.85f;
            }
        }
    }

    /// <summary>A slightly curved vessel with one or two side branches (recursively, <see cref="VesselTree.Generations"/> deep).</summary>
    private static void AddVessel(VesselTree tree, SKPoint from, float degrees, float length, SynthRandom rng, int depth)
    {
        float rad = degrees * MathF.PI / 180f;
        var dir = new SKPoint(MathF.Cos(rad), MathF.Sin(rad));
        var normal = new SKPoint(-dir.Y, dir.X);
        float bend = rng.Range(-0.04, 0.04);
        var end = new SKPoint(from.X + dir.X * length, from.Y + dir.Y * length);
        var ctrl = new SKPoint(from.X + dir.X * length * 0.5f + normal.X * bend, from.Y + dir.Y * length * 0.5f + normal.Y * bend);
        tree.Add(depth, from, ctrl, end, Quad(from, ctrl, end, 0.5f));
        if (depth + 1 >= VesselTree.Generations) return;
        int sub = rng.Between(1, 2);
        for (int k = 0; k < sub; k++)
        {
            float t = rng.Range(0.35, 0.7);
            var at = Quad(from, ctrl, end, t);
            float turn = (rng.Chance(0.5) ? 1 : -1) * rng.Range(20, 40);
            AddVessel(tree, at, degrees + turn, length * rng.Range(0.35, 0.55), rng, depth + 1);
        }
    }

    private static SKPoint Quad(SKPoint p0, SKPoint p1, SKPoint p2, float t)
    {
        float u = 1 - t;
        return new SKPoint(u * u * p0.X + 2 * u * t * p1.X + t * t * p2.X, u * u * p0.Y + 2 * u * t * p1.Y + t * t * p2.Y);
    }

    /// <summary>
    /// Pneumothorax: the lung collapses towards the hilum; between it and the chest wall the
    /// field is black without vessel markings, bounded by a thin white visceral pleural line.
    /// </summary>
    private static void DrawPneumothorax(GrayCanvas g, Side s, Anatomy a, SKPath lung)
    {
        var c = g.Canvas;
        using var collapsed = Paths.Transformed(lung, a.Collapsing(s));
        c.Save();
        c.ClipPath(lung, SKClipOperation.Intersect, true);
        c.Save();
        c.ClipPath(collapsed, SKClipOperation.Difference, true);
        c.DrawColor(GrayCanvas.Gray(0.03f));
        c.Restore();
        // The collapsed lung is denser (less air) than normal lung.
        g.FillPath(collapsed, 0.9f, alpha: 0.1f);
        g.StrokePath(collapsed, 0.92f, 0.006f, alpha: 0.85f);
        c.Restore();
    }

    private static void DrawMediastinum(GrayCanvas g, Anatomy a)
    {
        float half = 0.5f - a.Medial;
        using var path = Paths.Build(p => p.AddRoundRect(new SKRect(0.5f - half - 0.005f, -0.05f, 0.5f + half + 0.005f, 0.85f), 0.03f, 0.03f));
        g.FillPath(path, 0.56f, blur: 0.01f);
        // Aortic knob: a rounded bulge at the upper left (image right) mediastinal border.
        g.FillOval(0.5f + half + 0.012f, 0.33f, 0.035f, 0.03f, 0.58f, blur: 0.008f);
        // Trachea: an air column in the midline, dividing into the main bronchi.
        using var trachea = Paths.Build(p =>
        {
            p.MoveTo(0.5f, -0.05f);
            p.LineTo(0.5f, 0.36f);
            p.MoveTo(0.5f, 0.36f);
            p.LineTo(0.445f, 0.43f);
            p.MoveTo(0.5f, 0.36f);
            p.LineTo(0.56f, 0.44f);
        });
        g.StrokePath(trachea, 0.3f, 0.03f, alpha: 0.5f, blur: 0.006f);
    }

    /// <summary>
    /// Heart silhouette: the right border (image left) bulges a little past the mediastinum,
    /// the left border (image right) sweeps down to the apex over the left hemidiaphragm.
    /// Its width is <see cref="Anatomy.HeartWidth"/> (cardiothoracic ratio × thorax width).
    /// </summary>
    private static void DrawHeart(GrayCanvas g, Anatomy a, SynthRandom rng)
    {
        float w = a.HeartWidth;
        float shift = rng.Range(-0.01, 0.02);
        float xr = 0.5f - 0.36f * w + shift, xl = 0.5f + 0.64f * w + shift;
        float top = 0.42f + rng.Range(-0.02, 0.02);
        float br = a.BaseRight, bl = a.BaseLeft;
        using var heart = Paths.Build(p =>
        {
            p.MoveTo(0.465f, top);
            p.CubicTo(xr + 0.02f, top + 0.06f, xr - 0.01f, br - 0.2f, xr, br - 0.08f);
            p.CubicTo(xr + 0.01f, br + 0.02f, xl - 0.12f, bl + 0.02f, xl - 0.01f, bl - 0.04f);
            p.CubicTo(xl + 0.01f, bl - 0.16f, 0.5f + 0.3f * w, top + 0.02f, 0.545f, top - 0.02f);
            p.Close();
        });
        g.FillPath(heart, 0.6f, blur: 0.01f);
    }

    /// <summary>
    /// Pleural effusion: fluid fills the lower lung field (white), the costophrenic angle is
    /// blunted and the upper border is a meniscus, higher laterally than medially.
    /// </summary>
    private static void DrawEffusion(GrayCanvas g, Side s, Anatomy a, SKPath lung, SynthRandom rng)
    {
        var c = g.Canvas;
        float b = a.Base(s);
        float height = rng.Range(0.2, 0.32);
        float lateral = Anatomy.X(s, 0.5f - 1.08f * a.HalfWidth), medial = Anatomy.X(s, a.Medial + 0.02f);
        float top = b - height, medialTop = top + rng.Range(0.08, 0.13);
        using var fluid = Paths.Build(p =>
        {
            p.MoveTo(lateral, top - 0.02f);
            p.QuadTo(lateral + 0.3f * (medial - lateral), medialTop, medial, medialTop);
            p.LineTo(medial, 1.1f);
            p.LineTo(lateral, 1.1f);
            p.Close();
        });
        // Clip to the lung grown a little, so the blurred lung edge does not show through.
        using var space = Paths.Dilate(lung, 0.012f);
        c.Save();
        c.ClipPath(space, SKClipOperation.Intersect, true);
        using var paint = g.Fill(0.615f, blur: 0.014f); // about the heart's density: the two merge (silhouette sign)
        paint.BlendMode = SKBlendMode.Lighten;
        c.DrawPath(fluid, paint);
        c.Restore();
    }

    /// <summary>Nodules: round soft-edged opacities, 1–3 in one zone (upper or lower half) of one lung.</summary>
    private static void DrawNodules(GrayCanvas g, ChestFindings f, Anatomy a, SynthRandom rng)
    {
        var centres = NoduleCentres(f, a, g.Pixel, rng, out var radii);
        // In a collapsed lung the nodule moves with the lung.
        var collapse = a.Collapsing(f.NoduleSide);
        for (int i = 0; i < centres.Count; i++)
        {
            float r = radii[i];
            var p = collapse.MapPoint(centres[i]);
            using var paint = g.Fill(1f, alpha: rng.Range(0.55, 0.7), blur: 0.25f * r);
            paint.BlendMode = SKBlendMode.Screen;
            g.Canvas.DrawCircle(p, r, paint);
        }
    }

    private static List<SKPoint> NoduleCentres(ChestFindings f, Anatomy a, float pixel, SynthRandom rng, out List<float> radii)
    {
        float w = a.HalfWidth, b = a.Base(f.NoduleSide);
        // Zone boxes written for the patient's right lung; the left lower zone stays lateral to the heart.
        (float x0, float x1, float y0, float y1) box = f.NoduleZone == LungZone.Upper
            ? (0.5f - 0.86f * w, 0.5f - 0.38f * w, 0.2f, 0.41f)
            : (0.5f - 0.88f * w, 0.5f - 0.42f * w, 0.5f, b - 0.13f);
        if (f.NoduleSide == Side.Left && f.NoduleZone == LungZone.Lower)
        {
            float heartEdge = 0.64f * a.HeartWidth + 0.05f; // left heart border's distance from the midline, plus a margin
            box = (0.5f - 0.9f * w, Math.Min(box.x1, 0.5f - heartEdge), 0.48f, b - 0.14f);
            if (box.x1 < box.x0 + 0.03f) box.x1 = box.x0 + 0.03f;
        }
        var centres = new List<SKPoint>();
        radii = [];
        for (int n = 0; n < f.Nodules; n++)
        {
            float r = Math.Max(rng.Range(0.03, 0.045), 1.2f * pixel);   // 2–3 px radius at 64 px: visible to a small ViT
            SKPoint p = default;
            for (int attempt = 0; attempt < 60; attempt++)
            {
                p = new SKPoint(Anatomy.X(f.NoduleSide, rng.Range(box.x0, box.x1)), rng.Range(box.y0, box.y1));
                bool apart = true;
                for (int k = 0; k < centres.Count; k++)
                    if (SKPoint.Distance(p, centres[k]) < 1.7f * (r + radii[k]) + 0.01f) apart = false;
                if (apart) break;
            }
            centres.Add(p);
            radii.Add(r);
        }
        return centres;
    }

    /// <summary>Ribs and clavicles: faint bony overlays (Screen blend: bone adds density).</summary>
    private static void DrawRibs(GrayCanvas g, Anatomy a, SynthRandom rng)
    {
        var c = g.Canvas;
        using var posterior = g.Stroke(1f, 0.02f, alpha: 0.13f, blur: 0.004f);
        posterior.BlendMode = SKBlendMode.Screen;
        using var anterior = g.Stroke(1f, 0.016f, alpha: 0.08f, blur: 0.005f);
        anterior.BlendMode = SKBlendMode.Screen;
        using var clavicleBone = g.Stroke(1f, 0.024f, alpha: 0.26f, blur: 0.004f);
        clavicleBone.BlendMode = SKBlendMode.Screen;
        float w = a.HalfWidth;
        float spacing = (a.BaseRight - 0.12f) / 8.3f;
        foreach (var s in new[] { Side.Right, Side.Left })
        {
            SKPoint P(float x, float y) => new(Anatomy.X(s, x), y);
            for (int i = 0; i < 9; i++)
            {
                float y0 = 0.1f + i * spacing + rng.Range(-0.006, 0.006);
                // Posterior rib: leaves the spine, arcs up and out, then down along the chest wall.
                using var rib = Paths.Build(p =>
                {
                    p.MoveTo(P(0.47f, y0));
                    p.CubicTo(P(0.5f - 0.45f * w, y0 - 0.06f), P(0.5f - 0.95f * w, y0 - 0.03f), P(0.5f - 1.05f * w, y0 + 0.1f));
                });
                c.DrawPath(rib, posterior);
                if (i >= 6) continue;
                // Anterior rib: from the chest wall down and inwards towards the sternum.
                using var front = Paths.Build(p =>
                {
                    p.MoveTo(P(0.5f - 1.02f * w, y0 + 0.05f));
                    p.QuadTo(P(0.5f - 0.75f * w, y0 + 0.06f), P(0.5f - 0.3f * w, y0 + 0.2f));
                });
                c.DrawPath(front, anterior);
            }
            using var clavicle = Paths.Build(p =>
            {
                p.MoveTo(P(0.46f, 0.17f));
                p.CubicTo(P(0.38f, 0.19f), P(0.3f, 0.13f), P(0.5f - 1.12f * w, 0.12f));
            });
            c.DrawPath(clavicle, clavicleBone);
        }
    }

    /// <summary>Vertebral bodies stacked in the midline, faintly visible through the mediastinum and heart.</summary>
    private static void DrawSpine(GrayCanvas g)
    {
        var c = g.Canvas;
        using var vertebra = g.Fill(1f, alpha: 0.05f, blur: 0.006f);
        vertebra.BlendMode = SKBlendMode.Screen;
        for (float y = 0.02f; y < 1.05f; y += 0.064f)
            c.DrawRoundRect(new SKRect(0.467f, y, 0.533f, y + 0.05f), 0.01f, 0.01f, vertebra);
    }

    /// <summary>Gas in the stomach fundus just under the left hemidiaphragm (image right).</summary>
    private static void DrawGastricBubble(GrayCanvas g, Anatomy a, SynthRandom rng)
    {
        float x = Anatomy.X(Side.Left, 0.5f - rng.Range(0.45, 0.6) * a.HalfWidth);
        g.FillOval(x, a.BaseLeft - rng.Range(0.0, 0.03), rng.Range(0.03, 0.05), rng.Range(0.02, 0.03), 0.2f, alpha: 0.55f, blur: 0.01f);
    }
}
