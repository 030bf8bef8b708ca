namespace MedPeft.Tests.Data;

/// <summary>Locates the dataset format samples (fixtures/datasets, copied beside the test assembly) and makes writable copies.</summary>
internal static class ReaderFixtures
{
    public static string Datasets => Path.Combine(AppContext.BaseDirectory, "fixtures", "datasets");

    public static string At(params string[] parts) => Path.Combine([Datasets, .. parts]);

    /// <summary>A temporary copy of fixtures/datasets/<paramref name="dataset"/>; deleted on dispose.</summary>
    public static ReaderTempDir Copy(string dataset)
    {
        var t = new ReaderTempDir();
        CopyTree(At(dataset), t.Path);
        return t;
    }

    private static void CopyTree(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (var f in Directory.GetFiles(from)) File.Copy(f, System.IO.Path.Combine(to, System.IO.Path.GetFileName(f)));
        foreach (var d in Directory.GetDirectories(from)) CopyTree(d, System.IO.Path.Combine(to, System.IO.Path.GetFileName(d)));
    }

    /// <summary>Asserts a <see cref="MedPeftException"/> with a one-line message and returns the message.</summary>
    public static string OneLineError(Action action)
    {
        var e = Assert.Throws<MedPeftException>(action);
        Assert.DoesNotContain('\n', e.Message);
        Assert.DoesNotContain('\r', e.Message);
        return e.Message;
    }
}

internal sealed class ReaderTempDir : IDisposable
{
    public string Path { get; } = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "medpeft-readers-" + Guid.NewGuid().ToString("N"));

    public ReaderTempDir() => Directory.CreateDirectory(Path);

    public string Combine(params string[] parts) => System.IO.Path.Combine([Path, .. parts]);

    public void Dispose()
    {
        try { Directory.Delete(Path, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}
