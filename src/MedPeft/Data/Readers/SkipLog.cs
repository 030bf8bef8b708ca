namespace MedPeft.Data;

/// <summary>
/// Counts dataset entries a reader skipped on purpose, by reason (e.g. <c>q_lang=zh</c> for SLAKE's
/// Chinese questions in an English run), so callers can report them. Thread-safe.
/// </summary>
public sealed class SkipLog
{
    private readonly Dictionary<string, int> _counts = new(StringComparer.Ordinal);
    private readonly Lock _lock = new();

    public void Add(string reason, int count = 1)
    {
        ArgumentException.ThrowIfNullOrEmpty(reason);
        lock (_lock) _counts[reason] = _counts.GetValueOrDefault(reason) + count;
    }

    /// <summary>The number skipped for one reason (0 if none).</summary>
    public int this[string reason]
    {
        get { lock (_lock) return _counts.GetValueOrDefault(reason); }
    }

    /// <summary>All entries skipped, whatever the reason.</summary>
    public int Total
    {
        get { lock (_lock) return _counts.Values.Sum(); }
    }

    /// <summary>A snapshot of the counts, ordered by reason.</summary>
    public IReadOnlyDictionary<string, int> Counts
    {
        get
        {
            lock (_lock) return new SortedDictionary<string, int>(_counts, StringComparer.Ordinal);
        }
    }

    /// <summary><c>q_lang=zh: 3, …</c>, or an empty string when nothing was skipped.</summary>
    public override string ToString() => string.Join(", ", Counts.Select(kv => $"{kv.Key}: {kv.Value}"));
}
