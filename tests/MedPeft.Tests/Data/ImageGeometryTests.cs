using System.Text.Json.Nodes;
using MedPeft.Data;
using MedPeft.Experiments;
using MedPeft.Tests.Cli;

namespace MedPeft.Tests.Data;

public class ImageGeometryTests
{
    static string Temp() => Directory.CreateTempSubdirectory("medpeft-geom-").FullName;
    static float At(float[] x, int size, int c, int px, int py) => x[c * size * size + py * size + px];

    [Theory]
    [InlineData(500, 375, 336, 448, 336)]   // landscape: long side int(336·500/375) = 448
    [InlineData(375, 500, 336, 336, 448)]   // portrait
    [InlineData(640, 480, 224, 298, 224)]   // int(224·640/480 = 298.67) = 298, floor as Python's int()
    [InlineData(300, 300, 336, 336, 336)]   // square: upscaled
    public void Shortest_edge_resize_shape_matches_hf(int w, int h, int edge, int ew, int eh) =>
        Assert.Equal((ew, eh), ImageGeometry.ResizeShape(w, h, edge));

    [Theory]
    [InlineData(448, 336, 336, 56, 0)]
    [InlineData(449, 336, 336, 56, 0)]     // odd difference: one pixel fewer on the left, as HF's // 2
    [InlineData(336, 300, 336, 0, -18)]    // crop larger than the image: negative offset = zero padding
    public void Centre_crop_offsets_floor_like_hf(int w, int h, int crop, int left, int top) =>
        Assert.Equal((left, top), ImageGeometry.CropOffset(w, h, crop));

    [Fact]
    public void Clip_geometry_keeps_the_centre_of_a_wide_image_instead_of_squashing_it()
    {
        var dir = Temp();
        // 16×8 with a distinct value per column; shortest edge 8 = the height, so the resize is the identity and the
        // centre crop 8×8 must be exactly columns 4…11.
        var png = TestImages.WriteGrayPng(Path.Combine(dir, "wide.png"), 16, 8, 8, (x, y) => 10 + 15 * x);
        var clip = new ImageProcessor(8, Normalization.Unit, ImageGeometry.Clip(8)).Pixels(png);
        for (int x = 0; x < 8; x++)
            for (int y = 0; y < 8; y++)
                Assert.Equal((10 + 15 * (x + 4)) / 255f, At(clip, 8, 1, x, y), 6);
        // The square resize squeezes all 16 columns in: its left edge is darker than the crop's.
        var square = new ImageProcessor(8, Normalization.Unit).Pixels(png);
        Assert.True(At(square, 8, 1, 0, 4) < At(clip, 8, 1, 0, 4) - 0.1);
    }

    [Fact]
    public void Pad_to_square_pastes_the_image_centred_on_the_mean_colour()
    {
        var dir = Temp();
        var png = TestImages.WriteGrayPng(Path.Combine(dir, "flat.png"), 8, 4, 8, (x, y) => 200);
        var norm = Normalization.Clip;
        var px = new ImageProcessor(8, norm, ImageGeometry.Square with { PadToSquare = true }).Pixels(png);
        byte[] fill = [122, 116, 104];   // int(0.48145466·255), int(0.4578275·255), int(0.40821073·255): LLaVA's expand2square colour
        for (int c = 0; c < 3; c++)
        {
            float Norm(int v) => (float)((v / 255.0 - norm.Mean[c]) / norm.Std[c]);
            for (int x = 0; x < 8; x++)
            {
                foreach (int y in new[] { 0, 1, 6, 7 }) Assert.Equal(Norm(fill[c]), At(px, 8, c, x, y), 5);   // (8 − 4) // 2 = 2 rows above
                for (int y = 2; y < 6; y++) Assert.Equal(Norm(200), At(px, 8, c, x, y), 5);
            }
        }
    }

    static string Folder(JsonObject? preprocessor, string? aspect = null)
    {
        var dir = Temp();
        if (preprocessor is not null) File.WriteAllText(Path.Combine(dir, ImageGeometry.FileName), preprocessor.ToJsonString());
        if (aspect is not null) File.WriteAllText(Path.Combine(dir, "config.json"), new JsonObject { ["image_aspect_ratio"] = aspect }.ToJsonString());
        return dir;
    }

    [Fact]
    public void Folder_geometry_follows_preprocessor_config_and_image_aspect_ratio()
    {
        var clipJson = ImageGeometry.Clip(336).ToPreprocessorConfig(336, Normalization.Clip);
        Assert.Equal(new ImageGeometry(336, false), ImageGeometry.FromFolder(Folder(clipJson), 336, clipDefault: false));
        var blip = new JsonObject { ["size"] = new JsonObject { ["height"] = 384, ["width"] = 384 }, ["do_resize"] = true };
        Assert.Equal(ImageGeometry.Square, ImageGeometry.FromFolder(Folder(blip), 384, clipDefault: true));
        // No preprocessor_config.json: the family default; LLaVA v1.5's "pad" adds the padding.
        Assert.Equal(ImageGeometry.Clip(336), ImageGeometry.FromFolder(Folder(null), 336, clipDefault: true));
        Assert.Equal(ImageGeometry.Square, ImageGeometry.FromFolder(Folder(null), 384, clipDefault: false));
        Assert.Equal(ImageGeometry.Clip(336, pad: true), ImageGeometry.FromFolder(Folder(null, "pad"), 336, clipDefault: true));
    }

    [Fact]
    public void Unusable_preprocessor_configs_are_rejected_naming_the_file()
    {
        var wrongCrop = ImageGeometry.Clip(224).ToPreprocessorConfig(224, Normalization.Clip);
        var dir = Folder(wrongCrop);
        var e = Assert.Throws<MedPeftException>(() => ImageGeometry.FromFolder(dir, 336, clipDefault: true));
        Assert.Contains(Path.Combine(dir, ImageGeometry.FileName), e.Message);
        Assert.Contains("crop_size 224", e.Message);
        var noCrop = new JsonObject { ["size"] = new JsonObject { ["shortest_edge"] = 336 }, ["do_center_crop"] = false };
        Assert.Contains("do_center_crop", Assert.Throws<MedPeftException>(() => ImageGeometry.FromFolder(Folder(noCrop), 336, true)).Message);
        var anyShape = Folder(null, "anyres");
        Assert.Contains("config.json: image_aspect_ratio \"anyres\"", Assert.Throws<MedPeftException>(() => ImageGeometry.FromFolder(anyShape, 336, true)).Message);
    }

    [Fact]
    public void Llava_folder_uses_clip_geometry_and_a_saved_copy_keeps_it()
    {
        var root = Temp();
        var dir = LlavaJobsTests.TinyFolder(root);
        var configPath = Path.Combine(dir, "config.json");
        var config = JsonNode.Parse(File.ReadAllText(configPath))!.AsObject();
        config["image_aspect_ratio"] = "pad";
        File.WriteAllText(configPath, config.ToJsonString());
        using var s = LlavaJobs.Open(dir, TorchSharp.torch.CPU, template: null);
        int size = s.Model.Config.VisionConfig.ImageSize;
        Assert.Equal(ImageGeometry.Clip(size, pad: true), s.Geometry);
        var saved = Path.Combine(root, "saved");
        LlavaJobs.Save(s, saved);
        Assert.True(File.Exists(Path.Combine(saved, ImageGeometry.FileName)));
        Assert.Equal(s.Geometry, ImageGeometry.FromFolder(saved, size, clipDefault: false));   // read from the written file, not a default
    }
}
