using System.Text.RegularExpressions;
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

    /// <summary>PEFT matches target_modules over the whole model, so a tower-scoped adapter ("lora@llm", "ia3@text_decoder")
    /// is saved with targets that select exactly the modules adapted here: null when the method's own targets already do,
    /// else a full-match regex limited to the towers' prefixes, else the exact module names.</summary>
    /// <param name="linears">The model's adaptable Linear module names.</param>
    /// <param name="targets">The module-name matcher for a target regex (null: the method's own targets).</param>
    public static string? ScopedTargetRegex(IEnumerable<string> linears, IReadOnlySet<string> adapted, Func<string?, Func<string, bool>> targets,
        IReadOnlyList<string> targetModules, TowerLayout layout, IEnumerable<string> towers)
    {
        var names = linears.ToList();
        bool Exact(string? regex) => names.Where(targets(regex)).ToHashSet().SetEquals(adapted);
        if (Exact(null)) return null;
        var prefixes = towers.Distinct().Select(t => Regex.Escape(layout.Towers[t]));
        var scoped = $"(?:{string.Join("|", prefixes)}).*\\.(?:{string.Join("|", targetModules.Select(Regex.Escape))})";
        if (Exact(scoped)) return scoped;
        return string.Join("|", adapted.Order(StringComparer.Ordinal).Select(Regex.Escape));
    }
}

/// <summary>Replaces and removes child modules with TorchSharp's public API (register_module; null removes a child).</summary>
public static class ModuleSurgery
{
    /// <summary>Removes a child a method registered (e.g. a tower's prompt_encoder).</summary>
    public static void RemoveChild(torch.nn.Module parent, string name) => parent.register_module(name, null!);

    /// <summary>PEFT's _replace_module: puts <paramref name="replacement"/> where the module <paramref name="path"/> (a
    /// name in <paramref name="root"/>) was — in its parent's field of that name, which the parent's forward calls, and in
    /// its registered children, keeping their order (parameter names and state_dict order stay as before).</summary>
    public static void Replace(torch.nn.Module root, string path, torch.nn.Module replacement)
    {
        var dot = path.LastIndexOf('.');
        var parentName = dot < 0 ? "" : path[..dot];
        var name = path[(dot + 1)..];
        var parent = parentName.Length == 0 ? root
            : root.named_modules().FirstOrDefault(x => x.name == parentName).module ?? throw new MedPeftException($"{path}: no parent module \"{parentName}\"");
        var field = parent.GetType().GetField(name, System.Reflection.BindingFlags.Instance | System.Reflection.BindingFlags.Public);
        if (field is null || !field.FieldType.IsInstanceOfType(replacement))
            throw new MedPeftException($"{path}: {parent.GetType().Name} has no public field \"{name}\" that can hold a {replacement.GetType().Name}; this module cannot be adapted");
        var children = parent.named_children().ToList();
        int at = children.FindIndex(c => c.name == name);
        if (at < 0) throw new MedPeftException($"{path}: not a registered child of {parent.GetType().Name}");
        for (int i = at; i < children.Count; i++) parent.register_module(children[i].name, null!);
        field.SetValue(parent, replacement);
        parent.register_module(name, replacement);
        for (int i = at + 1; i < children.Count; i++) parent.register_module(children[i].name, children[i].module);
    }
}
