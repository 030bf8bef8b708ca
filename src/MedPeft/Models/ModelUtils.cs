using TorchSharp;
using static TorchSharp.torch;

namespace MedPeft.Models;

public static class ModelUtils
{
    /// <summary>Named parameters with tied tensors listed once (first name wins), as PyTorch's named_parameters()
    /// does. Every count in MedPeft goes through this, so a tied LM head is not counted twice.</summary>
    public static List<(string Name, TorchSharp.Modules.Parameter Param)> UniqueParameters(nn.Module module)
    {
        var seen = new HashSet<IntPtr>();
        var list = new List<(string, TorchSharp.Modules.Parameter)>();
        foreach (var (name, p) in module.named_parameters())
            if (seen.Add(p.Handle)) list.Add((name, p));
        return list;
    }

    /// <summary>Builds a module with every tensor on the meta device: shapes and names, no memory. Used by
    /// `medpeft inspect` and the approval tests for 7B-sized presets.</summary>
    public static T OnMeta<T>(Func<T> build) => On(torch.META, build);

    /// <summary>Builds a module directly on a device. Moving a built module with .to(device) would re-wrap each
    /// parameter separately and undo weight tying, so models are created where they will run.</summary>
    public static T On<T>(Device device, Func<T> build)
    {
        torch.set_default_device(device);
        try { return build(); }
        finally { torch.set_default_device(torch.CPU); }
    }

    /// <summary>As <see cref="On{T}(Device, Func{T})"/> with every floating parameter created in <paramref name="dtype"/>
    /// (null = the default, fp32).</summary>
    public static T On<T>(Device device, ScalarType? dtype, Func<T> build) =>
        dtype is { } d ? Precision.WithDefault(d, () => On(device, build)) : On(device, build);
}
