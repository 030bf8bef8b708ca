using TorchSharp;

namespace MedPeft.Tuning;

/// <summary>Helpers the extrinsic methods share: tower scoping of module names, removing what they added.</summary>
public static class TowerScope
{
    /// <summary>True for module names inside one of <paramref name="towers"/>.</summary>
    public static Func<string, bool> Within(TowerLayout layout, IReadOnlyList<string> towers) => moduleName =>
    {
        var tower = layout.TowerOf(moduleName + ".");
        return tower is not null && towers.Contains(tower);
    };

    /// <summary>True when a term names no towers (the strategy parser then gives all of them).</summary>
    public static bool IsAll(TowerLayout layout, IReadOnlyList<string> towers) => towers.Count == layout.Towers.Count;
}

/// <summary>Removes children / parameters that a method registered (TorchSharp has no public API for it).</summary>
public static class ModuleSurgery
{
    static readonly System.Reflection.BindingFlags Flags = System.Reflection.BindingFlags.Instance | System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Public;
    static readonly System.Reflection.FieldInfo? Submodules = typeof(torch.nn.Module).GetField("_internal_submodules", Flags);
    static readonly System.Reflection.FieldInfo? Params = typeof(torch.nn.Module).GetField("_internal_params", Flags);

    public static void RemoveChild(torch.nn.Module parent, string name)
    {
        if (Submodules?.GetValue(parent) is TorchSharp.Utils.OrderedDict<string, torch.nn.Module> dict) dict.Remove(name);
        else throw new MedPeftException("this TorchSharp version does not expose a module's children for removal");
    }

    public static void RemoveParameter(torch.nn.Module parent, string name)
    {
        if (Params?.GetValue(parent) is TorchSharp.Utils.OrderedDict<string, TorchSharp.Modules.Parameter> dict) dict.Remove(name);
        else throw new MedPeftException("this TorchSharp version does not expose a module's parameters for removal");
    }
}
