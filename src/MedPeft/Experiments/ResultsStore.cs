using System.Diagnostics;
using System.Text.Json.Nodes;
using Microsoft.Data.Sqlite;

namespace MedPeft.Experiments;

/// <summary>A finished run as stored: its canonical configuration and everything measured.</summary>
public sealed record StoredRun(string Key, int Index, string Method, JsonObject Config, JsonObject Result, string Worker, double FinishedAt);

/// <summary>The study's results store: one SQLite database (WAL journal, synchronous=FULL) per study output folder.
/// SQLite was chosen over an append-only JSONL file because the store needs more than appending: a run must be
/// claimed atomically so two processes never run it both (BEGIN IMMEDIATE makes claim = check + write one step),
/// a claim must be refreshed (heartbeat) and a stale one retaken, and a finished run must be recorded exactly once
/// even if a retaken run's first owner comes back. Each of these is one transaction; a crash at any moment leaves
/// either the state before or after it (the WAL is fsync'd at commit with synchronous=FULL), never a torn line.
/// <para>Tables: <c>runs</c> (key primary key, the claim: owner + heartbeat, and when done the result JSON) and
/// <c>events</c> (an append-only audit: claimed / retaken / finished / failed, used by tests and for debugging).</para></summary>
public sealed class ResultsStore : IDisposable
{
    public const string FileName = "results.db";
    readonly SqliteConnection _db;
    // The heartbeat timer runs on another thread and shares the connection.
    readonly object _gate = new();
    public string Path { get; }
    /// <summary>This process's identity: host, pid and a random suffix (a reused pid is not mistaken for us).</summary>
    public string Worker { get; } = $"{Environment.MachineName}:{Environment.ProcessId}:{Guid.NewGuid().ToString("N")[..8]}";
    /// <summary>A claim whose heartbeat is older than this is stale and may be retaken.</summary>
    public TimeSpan Lease { get; }

    public ResultsStore(string path, TimeSpan? lease = null)
    {
        Path = path;
        Lease = lease ?? DefaultLease();
        Directory.CreateDirectory(System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path))!);
        // Default Timeout: how long a statement waits on another process's write lock before SQLITE_BUSY.
        _db = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = path, DefaultTimeout = 60, Pooling = false }.ToString());
        _db.Open();
        Exec("PRAGMA busy_timeout = 60000;");
        Exec("PRAGMA journal_mode = WAL;");
        Exec("PRAGMA synchronous = FULL;");
        using var tx = _db.BeginTransaction();
        Exec("""
            CREATE TABLE IF NOT EXISTS runs (
              key TEXT PRIMARY KEY, idx INTEGER NOT NULL, method TEXT NOT NULL, config TEXT NOT NULL,
              status TEXT NOT NULL CHECK (status IN ('claimed', 'done')),
              owner TEXT, heartbeat REAL, attempts INTEGER NOT NULL DEFAULT 0,
              result TEXT, finished_at REAL);
            CREATE TABLE IF NOT EXISTS events (
              id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL, kind TEXT NOT NULL, worker TEXT NOT NULL, at REAL NOT NULL, detail TEXT);
            """, tx);
        tx.Commit();
    }

    static TimeSpan DefaultLease() =>
        Environment.GetEnvironmentVariable("MEDPEFT_STUDY_LEASE_SECONDS") is { Length: > 0 } s && double.TryParse(s, System.Globalization.CultureInfo.InvariantCulture, out var v)
            ? TimeSpan.FromSeconds(v) : TimeSpan.FromMinutes(2);

    static double Now() => DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() / 1000.0;

    void Exec(string sql, SqliteTransaction? tx = null, params (string, object?)[] args)
    {
        using var c = Command(sql, tx, args);
        c.ExecuteNonQuery();
    }

    SqliteCommand Command(string sql, SqliteTransaction? tx, params (string Name, object? Value)[] args)
    {
        var c = _db.CreateCommand();
        c.CommandText = sql;
        c.Transaction = tx;
        foreach (var (n, v) in args) c.Parameters.AddWithValue(n, v ?? DBNull.Value);
        return c;
    }

    public enum ClaimOutcome { Claimed, Done, Busy }

    /// <summary>Claims a run for this process in one write transaction: free → claimed; claimed by someone whose
    /// heartbeat is older than the lease, or by a dead process on this host → retaken; done or live claim → no.</summary>
    public ClaimOutcome TryClaim(StudyRun run) { lock (_gate) return TryClaimCore(run); }

    ClaimOutcome TryClaimCore(StudyRun run)
    {
        using var tx = _db.BeginTransaction(deferred: false);   // BEGIN IMMEDIATE: take the write lock before reading
        string? status = null, owner = null; double heartbeat = 0;
        using (var q = Command("SELECT status, owner, heartbeat FROM runs WHERE key = $k", tx, ("$k", run.Key)))
        using (var rd = q.ExecuteReader())
            if (rd.Read()) { status = rd.GetString(0); owner = rd.IsDBNull(1) ? null : rd.GetString(1); heartbeat = rd.IsDBNull(2) ? 0 : rd.GetDouble(2); }
        if (status == "done") return ClaimOutcome.Done;
        string kind = "claimed";
        if (status == "claimed")
        {
            bool stale = Now() - heartbeat > Lease.TotalSeconds || (owner is not null && DeadOnThisHost(owner));
            if (!stale && owner != Worker) return ClaimOutcome.Busy;
            kind = owner == Worker ? "claimed" : "retaken";
        }
        Exec("""
            INSERT INTO runs (key, idx, method, config, status, owner, heartbeat, attempts) VALUES ($k, $i, $m, $c, 'claimed', $o, $h, 1)
            ON CONFLICT(key) DO UPDATE SET status = 'claimed', owner = $o, heartbeat = $h, attempts = attempts + 1
            """, tx, ("$k", run.Key), ("$i", run.Index), ("$m", run.Method), ("$c", run.Config().ToJsonString()), ("$o", Worker), ("$h", Now()));
        Exec("INSERT INTO events (key, kind, worker, at, detail) VALUES ($k, $kind, $w, $t, $d)", tx,
            ("$k", run.Key), ("$kind", kind), ("$w", Worker), ("$t", Now()), ("$d", kind == "retaken" ? owner : null));
        tx.Commit();
        return ClaimOutcome.Claimed;
    }

    /// <summary>A claim by a process on this machine that no longer exists can be retaken at once (no lease wait).</summary>
    static bool DeadOnThisHost(string owner)
    {
        var parts = owner.Split(':');
        if (parts.Length != 3 || parts[0] != Environment.MachineName || !int.TryParse(parts[1], out var pid)) return false;
        if (pid == Environment.ProcessId) return false;
        try { using var p = Process.GetProcessById(pid); return p.HasExited; }
        catch (ArgumentException) { return true; }
    }

    /// <summary>Refreshes this process's claims (called by a timer while a run trains).</summary>
    public void Heartbeat(string key)
    {
        lock (_gate) Exec("UPDATE runs SET heartbeat = $h WHERE key = $k AND owner = $o AND status = 'claimed'", null, ("$h", Now()), ("$k", key), ("$o", Worker));
    }

    /// <summary>Records a finished run, only if this process still owns the claim (a retaken run is recorded by
    /// whoever retook it); returns whether it was recorded.</summary>
    public bool Finish(StudyRun run, JsonObject result) { lock (_gate) return FinishCore(run, result); }

    bool FinishCore(StudyRun run, JsonObject result)
    {
        using var tx = _db.BeginTransaction(deferred: false);
        using var c = Command("UPDATE runs SET status = 'done', result = $r, finished_at = $t, heartbeat = $t WHERE key = $k AND owner = $o AND status = 'claimed'", tx,
            ("$r", result.ToJsonString()), ("$t", Now()), ("$k", run.Key), ("$o", Worker));
        bool ok = c.ExecuteNonQuery() == 1;
        if (ok) Exec("INSERT INTO events (key, kind, worker, at) VALUES ($k, 'finished', $w, $t)", tx, ("$k", run.Key), ("$w", Worker), ("$t", Now()));
        tx.Commit();
        return ok;
    }

    /// <summary>Releases a claim after a failure so another attempt can take it; the error is kept in events.</summary>
    public void Fail(StudyRun run, string error) { lock (_gate) FailCore(run, error); }

    void FailCore(StudyRun run, string error)
    {
        using var tx = _db.BeginTransaction(deferred: false);
        Exec("DELETE FROM runs WHERE key = $k AND owner = $o AND status = 'claimed'", tx, ("$k", run.Key), ("$o", Worker));
        Exec("INSERT INTO events (key, kind, worker, at, detail) VALUES ($k, 'failed', $w, $t, $d)", tx, ("$k", run.Key), ("$w", Worker), ("$t", Now()), ("$d", error));
        tx.Commit();
    }

    public IReadOnlyList<StoredRun> Finished() { lock (_gate) return FinishedCore(); }

    IReadOnlyList<StoredRun> FinishedCore()
    {
        var list = new List<StoredRun>();
        using var q = Command("SELECT key, idx, method, config, result, owner, finished_at FROM runs WHERE status = 'done' ORDER BY idx, key", null);
        using var rd = q.ExecuteReader();
        while (rd.Read())
            list.Add(new StoredRun(rd.GetString(0), rd.GetInt32(1), rd.GetString(2), JsonNode.Parse(rd.GetString(3))!.AsObject(),
                JsonNode.Parse(rd.GetString(4))!.AsObject(), rd.GetString(5), rd.GetDouble(6)));
        return list;
    }

    public bool IsDone(string key) { lock (_gate) return IsDoneCore(key); }

    bool IsDoneCore(string key)
    {
        using var q = Command("SELECT 1 FROM runs WHERE key = $k AND status = 'done'", null, ("$k", key));
        return q.ExecuteScalar() is not null;
    }

    /// <summary>(key, kind) of every event, oldest first.</summary>
    public IReadOnlyList<(string Key, string Kind, string Worker)> Events() { lock (_gate) return EventsCore(); }

    IReadOnlyList<(string Key, string Kind, string Worker)> EventsCore()
    {
        var list = new List<(string, string, string)>();
        using var q = Command("SELECT key, kind, worker FROM events ORDER BY id", null);
        using var rd = q.ExecuteReader();
        while (rd.Read()) list.Add((rd.GetString(0), rd.GetString(1), rd.GetString(2)));
        return list;
    }

    public void Dispose() { lock (_gate) _db.Dispose(); }
}
