using MedPeft.Evaluation;

namespace MedPeft.Tests.Evaluation;

/// <summary>METEOR: never approximated; the pycocoevalcap protocol is tested with fakes (no real jar here).</summary>
public class MeteorTests
{
    private static readonly ReportPair[] Pairs =
    [
        new("a", "the lungs are clear .", ["lungs are clear ."]),
        new("b", "no  effusion ||| here .", ["no pleural effusion .", "no effusion ."]),
    ];

    [Fact]
    public void WithoutAJarItIsNotComputed()
    {
        var scores = ReportMetrics.Compute(Pairs);
        Assert.Null(scores.Meteor);
        Assert.StartsWith("METEOR not computed: ", scores.MeteorNote);
        Assert.DoesNotContain(ReportMetrics.MeteorKey, scores.ToDictionary().Keys);
        Assert.DoesNotContain(ReportMetrics.MeteorKey, scores.ToPerExampleDictionary().Keys);
    }

    [Fact]
    public void MissingJarOrJavaIsNotComputed()
    {
        string dir = Directory.CreateTempSubdirectory("meteor-test").FullName;
        try
        {
            var noJar = Meteor.Compute(Pairs, new MeteorOptions(Path.Combine(dir, "meteor-1.5.jar")));
            Assert.Null(noJar.Score);
            Assert.StartsWith("METEOR not computed: meteor-1.5.jar not found", noJar.Note);

            string jar = Path.Combine(dir, "meteor-1.5.jar");
            File.WriteAllText(jar, "not a jar");
            var noJava = Meteor.Compute(Pairs, new MeteorOptions(jar) { Java = "java-that-does-not-exist-xyz" });
            Assert.Null(noJava.Score);
            Assert.Null(noJava.PerExample);
            Assert.Equal("METEOR not computed: 'java-that-does-not-exist-xyz' not found on PATH", noJava.Note);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void ScoreLineSanitizesOnlyTheHypothesis()
    {
        // pycocoevalcap: hyp.replace('|||', '').replace('  ', ' '): "no  effusion ||| here ." → "no  effusion  here ."
        // → one pass of double→single space → "no effusion here ." References are passed through untouched.
        Assert.Equal("SCORE ||| no pleural effusion . ||| no effusion . ||| no effusion here .",
            Meteor.ScoreLine(Pairs[1].Candidate, Pairs[1].References));
        Assert.Equal("SCORE ||| a  b ||| x  y", Meteor.ScoreLine("x   y", ["a  b"]));  // 3 spaces → 2 (one pass)
        Assert.Equal("SCORE ||| r ||| ", Meteor.ScoreLine("", ["r"]));
        Assert.Equal("SCORE ||| r 1 ||| h 2", Meteor.ScoreLine("h\n2", ["r\r\n1"]));  // no line breaks on the wire
    }

    [Fact]
    public void EvalLineAndScoreParsing()
    {
        Assert.Equal("EVAL ||| 1 2 3 ||| 4 5 6", Meteor.EvalLine(["1 2 3", "4 5 6"]));
        Assert.Equal(0.2831, Meteor.ParseScore(" 0.2831\r"));
        Assert.Equal(1e-5, Meteor.ParseScore("1.0E-5"));
        Assert.Throws<FormatException>(() => Meteor.ParseScore("Error: bad"));
        Assert.Equal(["-jar", "-Xmx2G", "/x/meteor-1.5.jar", "-", "-", "-stdio", "-l", "en", "-norm"],
            Meteor.Arguments("/x/meteor-1.5.jar"));
    }

    [Fact]
    public void ProtocolScoresEachPairThenEvaluatesAll()
    {
        var fake = new FakeChannel();
        var (score, perExample) = Meteor.Evaluate(fake, Pairs);

        Assert.Equal(
        [
            "SCORE ||| lungs are clear . ||| the lungs are clear .",
            "SCORE ||| no pleural effusion . ||| no effusion . ||| no effusion here .",
            "EVAL ||| 5 4 1 ||| 6 4 2",
        ], fake.Sent);
        Assert.Equal([0.5, 0.25], perExample);
        Assert.Equal(0.375, score);
    }

    [Fact]
    public void ProtocolFailsWhenTheProcessStopsAnswering()
    {
        var fake = new FakeChannel { StopAfter = 2 };
        Assert.Throws<IOException>(() => Meteor.Evaluate(fake, Pairs));
    }

    [Fact]
    public void RunsAFakeJavaProcess()
    {
        if (!OperatingSystem.IsLinux() || Meteor.FindExecutable("bash") is null) return;
        string dir = Directory.CreateTempSubdirectory("meteor-test").FullName;
        try
        {
            string jar = Path.Combine(dir, "meteor-1.5.jar");
            File.WriteAllText(jar, "");
            // Stands in for `java`: records its arguments and working directory, answers SCORE with statistics and
            // EVAL with one score per "|||"-separated statistics field plus the aggregate.
            string java = WriteScript(dir, "fake-java", """
                #!/usr/bin/env bash
                printf '%s\n' "$@" > args.txt
                pwd > cwd.txt
                i=0
                while IFS= read -r line; do
                  case "$line" in
                    SCORE*) i=$((i+1)); echo "$i 2 3 " ;;
                    EVAL*) n=$(grep -o ' ||| ' <<<"$line" | wc -l)
                           for ((k=1; k<=n; k++)); do echo "0.$k"; done
                           echo "0.75" ;;
                  esac
                done
                """);
            var result = Meteor.Compute(Pairs, new MeteorOptions(jar) { Java = java });

            Assert.Null(result.Note);
            Assert.Equal(0.75, result.Score);
            Assert.Equal([0.1, 0.2], result.PerExample);
            Assert.Equal(["-jar", "-Xmx2G", jar, "-", "-", "-stdio", "-l", "en", "-norm"],
                File.ReadAllLines(Path.Combine(dir, "args.txt")));
            Assert.Equal(dir, File.ReadAllText(Path.Combine(dir, "cwd.txt")).Trim());

            var scores = ReportMetrics.Compute(Pairs, new MeteorOptions(jar) { Java = java });
            Assert.Equal(0.75, scores.ToDictionary()[ReportMetrics.MeteorKey]);
            Assert.Equal([0.1, 0.2], scores.ToPerExampleDictionary()[ReportMetrics.MeteorKey]);
            Assert.Null(scores.MeteorNote);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void ACrashingJavaGivesANoteWithItsStderr()
    {
        if (!OperatingSystem.IsLinux() || Meteor.FindExecutable("bash") is null) return;
        string dir = Directory.CreateTempSubdirectory("meteor-test").FullName;
        try
        {
            string jar = Path.Combine(dir, "meteor-1.5.jar");
            File.WriteAllText(jar, "");
            string java = WriteScript(dir, "fake-java", """
                #!/usr/bin/env bash
                echo "Error: Invalid or corrupt jarfile" >&2
                exit 1
                """);
            var result = Meteor.Compute(Pairs, new MeteorOptions(jar) { Java = java });
            Assert.Null(result.Score);
            Assert.StartsWith("METEOR not computed: ", result.Note);
            Assert.Contains("Invalid or corrupt jarfile", result.Note);
            Assert.DoesNotContain('\n', result.Note!);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
    private static string WriteScript(string dir, string name, string body)
    {
        string path = Path.Combine(dir, name);
        File.WriteAllText(path, body.ReplaceLineEndings("\n") + "\n");
        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        return path;
    }

    /// <summary>Answers like METEOR: SCORE → a statistics line; EVAL → one score per pair, then the aggregate.</summary>
    private sealed class FakeChannel : IMeteorChannel
    {
        private readonly Queue<string> _answers = new();
        public List<string> Sent { get; } = [];
        public int StopAfter { get; init; } = int.MaxValue;

        public void WriteLine(string line)
        {
            Sent.Add(line);
            if (line.StartsWith("SCORE", StringComparison.Ordinal))
                _answers.Enqueue($" {4 + Sent.Count} 4 {Sent.Count}\n");  // padded: must be stripped
            else if (line.StartsWith("EVAL", StringComparison.Ordinal))
                foreach (var s in new[] { "0.5", "0.25", "0.375" }) _answers.Enqueue(s);
        }

        public string? ReadLine() => Sent.Count > StopAfter || _answers.Count == 0 ? null : _answers.Dequeue();
    }
}
