namespace MedPeft;

/// <summary>Crash-safe file writes: write a temporary file beside the target, flush it to disk, rename over the
/// target (atomic on POSIX file systems).</summary>
public static class AtomicFile
{
    public static void WriteAllText(string path, string text)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        var tmp = path + $".tmp-{Environment.ProcessId}";
        using (var fs = new FileStream(tmp, FileMode.Create, FileAccess.Write))
        using (var w = new StreamWriter(fs))
        {
            w.Write(text);
            w.Flush();
            fs.Flush(flushToDisk: true);
        }
        File.Move(tmp, path, overwrite: true);
    }

    /// <summary>Flushes an already written temporary file and renames it to its final path.</summary>
    public static void Commit(string tmp, string path)
    {
        using (var fs = new FileStream(tmp, FileMode.Open, FileAccess.ReadWrite)) fs.Flush(flushToDisk: true);
        File.Move(tmp, path, overwrite: true);
    }
}
