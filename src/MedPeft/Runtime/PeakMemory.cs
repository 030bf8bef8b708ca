namespace MedPeft;

/// <summary>Peak resident memory of this process (Linux VmHWM). <see cref="Reset"/> writes 5 to
/// /proc/self/clear_refs, which resets the high-water mark, so each run of a study gets its own peak. Elsewhere it
/// falls back to .NET's peak working set (not resettable).</summary>
public static class PeakMemory
{
    public static bool Reset()
    {
        try { File.WriteAllText("/proc/self/clear_refs", "5"); return true; }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or DirectoryNotFoundException) { return false; }
    }

    /// <summary>"VmHWM:\t  414000 kB" or "VmHWM:\t14230240 kB" (the padding shrinks as the number grows) → bytes.</summary>
    public static long ParseStatusKilobytes(string line) =>
        long.Parse(line.Split((char[])[' ', '\t'], StringSplitOptions.RemoveEmptyEntries)[1]) * 1024;

    public static long Bytes()
    {
        try
        {
            foreach (var line in File.ReadLines("/proc/self/status"))
                if (line.StartsWith("VmHWM:")) return ParseStatusKilobytes(line);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or DirectoryNotFoundException) { }
        return System.Diagnostics.Process.GetCurrentProcess().PeakWorkingSet64;
    }
}
