using System.Text.Json.Nodes;

namespace MedPeft.Data;

/// <summary>How an image of any shape becomes the model's square input, as the checkpoint's own preprocessing does it:
/// <list type="bullet">
/// <item>square resize (BlipImageProcessor: <c>size {height, width}</c>) when <see cref="ShortestEdge"/> is null;</item>
/// <item>CLIPImageProcessor: the shortest edge resized to <see cref="ShortestEdge"/> keeping the aspect ratio (the long
/// edge becomes <c>int(edge · long / short)</c>), then a centre crop to the model's size, top/left offsets
/// <c>(orig − crop) // 2</c> (HF image_transforms; zero padding if the crop is larger);</item>
/// <item><see cref="PadToSquare"/>: LLaVA's <c>image_aspect_ratio: "pad"</c> (expand2square) first pastes the image on a
/// square of its long side filled with the processor's mean colour (int(mean·255) per channel), at offset
/// <c>(long − short) // 2</c>, so nothing is cropped away.</item>
/// </list>
/// The resampling is SkiaSharp's Catmull-Rom cubic, not PIL's antialiased bicubic, so pixels differ slightly from
/// Python's on downscaling; the geometry (what part of the image lands where) is the same.</summary>
public sealed record ImageGeometry(int? ShortestEdge, bool PadToSquare)
{
    public const string FileName = "preprocessor_config.json";

    public static readonly ImageGeometry Square = new(null, false);

    /// <summary>CLIP's geometry for a model of input size <paramref name="size"/> (clip-vit-*-336: shortest edge 336,
    /// crop 336).</summary>
    public static ImageGeometry Clip(int size, bool pad = false) => new(size, pad);

    /// <summary>One line for logs, e.g. "shortest edge → 336, centre crop 336×336, padded to square first".</summary>
    public string Describe(int size) =>
        (ShortestEdge is int e ? $"shortest edge → {e}, centre crop {size}×{size}" : $"resized to {size}×{size}")
        + (PadToSquare ? ", padded to square with the mean colour first" : "");

    /// <summary>The output size of the shortest-edge resize for a <paramref name="width"/>×<paramref name="height"/>
    /// image (HF get_resize_output_image_size with default_to_square=False).</summary>
    public static (int Width, int Height) ResizeShape(int width, int height, int edge)
    {
        int shortSide = Math.Min(width, height), longSide = Math.Max(width, height);
        int newLong = (int)((long)edge * longSide / shortSide);   // Python int() of a positive float = floor
        return width <= height ? (edge, newLong) : (newLong, edge);
    }

    /// <summary>Top-left offset of the centre crop (HF center_crop: floor division, negative = padding).</summary>
    public static (int Left, int Top) CropOffset(int width, int height, int crop) =>
        ((int)Math.Floor((width - crop) / 2.0), (int)Math.Floor((height - crop) / 2.0));

    /// <summary>The geometry of a checkpoint folder: its <c>preprocessor_config.json</c> when present (HF layout),
    /// else the family's default (<paramref name="clipDefault"/>: LLaVA folders in the original layout load CLIP's
    /// processor from the vision tower's name, which resizes the shortest edge and centre-crops). An
    /// <c>image_aspect_ratio</c> of "pad" in config.json (original LLaVA / LLaVA-Med v1.5) adds the square padding.
    /// The crop must equal the model's input size: the position embeddings are fixed.</summary>
    public static ImageGeometry FromFolder(string dir, int modelSize, bool clipDefault)
    {
        bool pad = false;
        var configPath = Path.Combine(dir, "config.json");
        if (File.Exists(configPath) && JsonNode.Parse(File.ReadAllText(configPath))?["image_aspect_ratio"] is JsonValue ar)
        {
            var mode = ar.GetValue<string>();
            pad = mode switch
            {
                "pad" => true,
                "square" or "resize" => false,
                _ => throw new MedPeftException($"{configPath}: image_aspect_ratio \"{mode}\" is not supported (pad, square)"),
            };
        }
        var path = Path.Combine(dir, FileName);
        if (!File.Exists(path)) return clipDefault ? Clip(modelSize, pad) : Square with { PadToSquare = pad };

        JsonNode json;
        try { json = JsonNode.Parse(File.ReadAllText(path)) ?? throw new MedPeftException($"{path}: empty"); }
        catch (System.Text.Json.JsonException e) { throw new MedPeftException($"{path}: invalid JSON ({e.Message})"); }
        var size = json["size"];
        bool resize = json["do_resize"]?.GetValue<bool>() ?? true;
        if (!resize) throw new MedPeftException($"{path}: do_resize false is not supported (images of any size must become {modelSize}×{modelSize})");
        if (size?["shortest_edge"] is JsonValue se)
        {
            int edge = se.GetValue<int>();
            if (json["do_center_crop"]?.GetValue<bool>() != true)
                throw new MedPeftException($"{path}: size.shortest_edge without do_center_crop does not give a square input; not supported");
            int crop = CropSize(json["crop_size"], path);
            if (crop != modelSize) throw new MedPeftException($"{path}: crop_size {crop} differs from the vision model's image_size {modelSize}");
            return new ImageGeometry(edge, pad);
        }
        int side = size switch
        {
            JsonObject o when o["height"] is JsonValue h && o["width"] is JsonValue w =>
                h.GetValue<int>() == w.GetValue<int>() ? h.GetValue<int>() : throw new MedPeftException($"{path}: size {h}×{w} is not square; not supported"),
            JsonValue v => v.GetValue<int>(),   // older processors wrote a bare int
            null => modelSize,
            _ => throw new MedPeftException($"{path}: size must be {{\"shortest_edge\": N}} or {{\"height\": N, \"width\": N}}"),
        };
        if (side != modelSize) throw new MedPeftException($"{path}: size {side} differs from the vision model's image_size {modelSize}");
        return Square with { PadToSquare = pad };
    }

    static int CropSize(JsonNode? crop, string path) => crop switch
    {
        JsonObject o when o["height"] is JsonValue h && o["width"] is JsonValue w =>
            h.GetValue<int>() == w.GetValue<int>() ? h.GetValue<int>() : throw new MedPeftException($"{path}: crop_size {h}×{w} is not square; not supported"),
        JsonValue v => v.GetValue<int>(),
        _ => throw new MedPeftException($"{path}: do_center_crop is true but crop_size is missing"),
    };

    /// <summary>A CLIPImageProcessor preprocessor_config.json describing this geometry for a model of input size
    /// <paramref name="size"/> (written next to a saved model whose source folder had none, so a reload preprocesses
    /// the same way). Square geometry writes BlipImageProcessor-style <c>size {height, width}</c>.</summary>
    public JsonObject ToPreprocessorConfig(int size, Normalization normalization)
    {
        var json = new JsonObject
        {
            ["image_processor_type"] = ShortestEdge is null ? "BlipImageProcessor" : "CLIPImageProcessor",
            ["do_resize"] = true,
            ["resample"] = 3,   // PIL bicubic
            ["do_rescale"] = true,
            ["rescale_factor"] = normalization.Scale,
            ["do_normalize"] = true,
            ["image_mean"] = new JsonArray(normalization.Mean.Select(m => (JsonNode)(double)m).ToArray()),
            ["image_std"] = new JsonArray(normalization.Std.Select(m => (JsonNode)(double)m).ToArray()),
            ["do_convert_rgb"] = true,
        };
        if (ShortestEdge is int edge)
        {
            json["size"] = new JsonObject { ["shortest_edge"] = edge };
            json["do_center_crop"] = true;
            json["crop_size"] = new JsonObject { ["height"] = size, ["width"] = size };
        }
        else json["size"] = new JsonObject { ["height"] = size, ["width"] = size };
        return json;
    }
}
