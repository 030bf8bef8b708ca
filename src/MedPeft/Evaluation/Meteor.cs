using System.Diagnostics;
using System.Globalization;
using System.Text;

namespace MedPeft.Evaluation;

/// <summary>Where to find METEOR 1.5 (it is only ever run, never approximated).</summary>
/// <param name="JarPath">Path to <c>meteor-1.5.jar</c>; its directory must also hold <c>data/paraphrase-en.gz</c>.</param>
public sealed record MeteorOptions(string JarPath)
{
    /// <summary>The java executable: a bare name looked up on PATH, or a path.</summary>
    public string Java { get; init; } = "java";

    /// <summary>Longest wait for any one line of METEOR output (the first SCORE loads the paraphrase table).</summary>
    public TimeSpan ReadTimeout { get; init; } = TimeSpan.FromMinutes(5);
}

/// <summary>METEOR scores, or a null score with a note saying why it was not computed.</summary>
public sealed record MeteorResult(double? Score, IReadOnlyList<double>? PerExample, string? Note)
{
    public static MeteorResult NotComputed(string reason) => new(null, null, "METEOR not computed: " + reason);
}

/// <summary>A line-oriented conversation with a METEOR <c>-stdio</c> process (abstracted so tests can fake it).</summary>
public interface IMeteorChannel
{
    void WriteLine(string line);

    /// <summary>The next output line, or null when the process has ended.</summary>
    string? ReadLine();
}

/// <summary>
/// METEOR 1.5 run the way pycocoevalcap's <c>Meteor</c> runs it:
/// <c>java -jar -Xmx2G meteor-1.5.jar - - -stdio -l en -norm</c> in the jar's directory, one
/// <c>SCORE ||| ref1 ||| … ||| hyp</c> line per pair (each answered by a line of statistics), then one
/// <c>EVAL ||| stats1 ||| … ||| statsN</c> line, answered by N per-pair scores and the corpus score.
/// </summary>
public static class Meteor
{
    public static MeteorResult Compute(IReadOnlyList<ReportPair> pairs, MeteorOptions? options)
    {
        ReportMetrics.Validate(pairs);
        if (options is null) return MeteorResult.NotComputed("no path to meteor-1.5.jar was given");
        string jar = Path.GetFullPath(options.JarPath);
        if (!File.Exists(jar)) return MeteorResult.NotComputed($"meteor-1.5.jar not found at '{jar}'");
        string? java = FindExecutable(options.Java);
        if (java is null) return MeteorResult.NotComputed($"'{options.Java}' not found on PATH");

        try
        {
            using var process = new MeteorProcess(java, jar, options.ReadTimeout);
            try
            {
                var (score, perExample) = Evaluate(process, pairs);
                return new MeteorResult(score, perExample, null);
            }
            catch (Exception e) when (e is IOException or FormatException or TimeoutException)
            {
                return MeteorResult.NotComputed($"meteor-1.5.jar failed: {e.Message.ReplaceLineEndings(" ")}{process.StderrSummary()}");
            }
        }
        catch (Exception e) when (e is System.ComponentModel.Win32Exception or IOException)
        {
            return MeteorResult.NotComputed($"could not start '{java}': {e.Message.ReplaceLineEndings(" ")}");
        }
    }

    /// <summary>The protocol of pycocoevalcap's <c>Meteor.compute_score</c> over any channel.</summary>
    public static (double Score, double[] PerExample) Evaluate(IMeteorChannel channel, IReadOnlyList<ReportPair> pairs)
    {
        var stats = new List<string>(pairs.Count);
        foreach (var pair in pairs)
        {
            channel.WriteLine(ScoreLine(pair.Candidate, pair.References));
            stats.Add(PythonStrings.Strip(Read(channel)));
        }
        channel.WriteLine(EvalLine(stats));
        var perExample = new double[pairs.Count];
        for (int i = 0; i < perExample.Length; i++) perExample[i] = ParseScore(Read(channel));
        return (ParseScore(Read(channel)), perExample);
    }

    /// <summary>
    /// <c>SCORE ||| ref1 ||| … ||| refN ||| hypothesis</c>. As in pycocoevalcap, only the hypothesis is sanitized
    /// (<c>|||</c> removed, then one pass of double space → single space). Not in pycocoevalcap: line breaks are
    /// turned into spaces everywhere, since one would desynchronize the line protocol.
    /// </summary>
    public static string ScoreLine(string hypothesis, IReadOnlyList<string> references)
    {
        string hyp = OneLine(hypothesis).Replace("|||", "").Replace("  ", " ");
        return string.Join(" ||| ", references.Select(OneLine).Prepend("SCORE").Append(hyp));
    }

    /// <summary><c>EVAL ||| stats1 ||| … ||| statsN</c>, the statistics lines exactly as METEOR returned them (stripped).</summary>
    public static string EvalLine(IEnumerable<string> stats) => "EVAL" + string.Concat(stats.Select(s => " ||| " + s));

    /// <summary>A score line as Python's <c>float(line.strip())</c> reads it.</summary>
    public static double ParseScore(string line)
    {
        string s = PythonStrings.Strip(line);
        return double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out double v)
            ? v
            : throw new FormatException($"unexpected METEOR output line '{s}'");
    }

    /// <summary>The java arguments, as pycocoevalcap passes them (with the jar as a full path).</summary>
    public static IReadOnlyList<string> Arguments(string jarPath) =>
        ["-jar", "-Xmx2G", jarPath, "-", "-", "-stdio", "-l", "en", "-norm"];

    /// <summary>A path as given if it names a directory part, else the first match on PATH; null if none exists.</summary>
    public static string? FindExecutable(string nameOrPath)
    {
        if (nameOrPath.Contains(Path.DirectorySeparatorChar) || nameOrPath.Contains(Path.AltDirectorySeparatorChar))
            return File.Exists(nameOrPath) ? Path.GetFullPath(nameOrPath) : null;
        string[] names = OperatingSystem.IsWindows() && !Path.HasExtension(nameOrPath)
            ? [nameOrPath + ".exe", nameOrPath]
            : [nameOrPath];
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator))
        {
            if (dir.Length == 0) continue;
            foreach (var name in names)
            {
                string candidate = Path.Combine(dir, name);
                if (File.Exists(candidate)) return candidate;
            }
        }
        return null;
    }

    private static string OneLine(string s) => s.Replace("\r\n", " ").Replace('\r', ' ').Replace('\n', ' ');

    private static string Read(IMeteorChannel channel) =>
        channel.ReadLine() ?? throw new IOException("the METEOR process ended before answering");

    /// <summary>The java process, with stderr drained in the background (kept for error notes).</summary>
    private sealed class MeteorProcess : IMeteorChannel, IDisposable
    {
        private readonly Process _process;
        private readonly TimeSpan _timeout;
        private readonly Queue<string> _stderr = new();

        public MeteorProcess(string java, string jar, TimeSpan timeout)
        {
            _timeout = timeout;
            var utf8 = new UTF8Encoding(encoderShouldEmitUTF8Identifier: false);
            var info = new ProcessStartInfo(java)
            {
                WorkingDirectory = Path.GetDirectoryName(jar)!,  // pycocoevalcap runs it next to its data/
                RedirectStandardInput = true,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                StandardInputEncoding = utf8,
                StandardOutputEncoding = utf8,
                StandardErrorEncoding = utf8,
                UseShellExecute = false,
            };
            foreach (var arg in Arguments(jar)) info.ArgumentList.Add(arg);
            _process = new Process { StartInfo = info };
            _process.ErrorDataReceived += (_, e) =>
            {
                if (e.Data is null) return;
                lock (_stderr)
                {
                    _stderr.Enqueue(e.Data);
                    if (_stderr.Count > 5) _stderr.Dequeue();
                }
            };
            _process.Start();
            _process.BeginErrorReadLine();
            _process.StandardInput.NewLine = "\n";
            _process.StandardInput.AutoFlush = true;
        }

        public void WriteLine(string line) => _process.StandardInput.WriteLine(line);

        public string? ReadLine()
        {
            var read = _process.StandardOutput.ReadLineAsync();
            if (!read.Wait(_timeout)) throw new TimeoutException($"no answer from METEOR within {_timeout}");
            return read.Result;
        }

        public string StderrSummary()
        {
            // After exit, the parameterless WaitForExit also waits until stderr is fully drained.
            if (_process.WaitForExit(TimeSpan.FromSeconds(2))) _process.WaitForExit();
            lock (_stderr)
            {
                var lines = _stderr.Where(l => l.Trim().Length > 0).Select(l => l.Trim()).ToList();
                return lines.Count == 0 ? "" : " (stderr: " + string.Join(" / ", lines) + ")";
            }
        }

        public void Dispose()
        {
            try
            {
                _process.StandardInput.Close();
                if (!_process.WaitForExit(TimeSpan.FromSeconds(5))) _process.Kill();
                _process.WaitForExit();
            }
            catch (Exception e) when (e is IOException or InvalidOperationException)
            {
                // The process is already gone.
            }
            _process.Dispose();
        }
    }
}
