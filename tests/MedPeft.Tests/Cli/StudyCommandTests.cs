namespace MedPeft.Tests.Cli;

/// <summary>The study command's non-training paths: file errors, --list, --emit slurm, --collect.</summary>
public class StudyCommandTests
{
    static string TempFile(string text)
    {
        var path = Path.Combine(Directory.CreateTempSubdirectory("medpeft-studycmd-").FullName, "s.yaml");
        File.WriteAllText(path, text);
        return path;
    }

    const string Small = "name: small\nmodels: [embedded]\ndatasets: [{format: embedded}]\nstrategies: [ln, bias]\nseeds: [1, 2, 3]\n";

    [Fact]
    public void A_bad_study_file_is_one_line_naming_file_and_field_with_exit_1()
    {
        var file = TempFile("models: [embedded]\ndatasets: [{format: embedded}]\nstrategies: [ln]\nepochs: many\n");
        var r = CliRunner.Run("study", file);
        Assert.Equal(1, r.ExitCode);
        Assert.Equal($"medpeft: error: {file}:4: epochs: expected an integer, got \"many\"", r.StdErr.Trim());
    }

    [Fact]
    public void Emit_slurm_writes_a_job_array_with_one_task_per_run_and_a_collect_job()
    {
        var file = TempFile(Small);
        var dir = Path.Combine(Path.GetDirectoryName(file)!, "slurm");
        var outDir = Path.Combine(Path.GetDirectoryName(file)!, "out");
        var r = CliRunner.Run("study", file, "--out", outDir, "--emit", "slurm", dir);
        Assert.True(r.ExitCode == 0, r.StdErr);
        var array = File.ReadAllText(Path.Combine(dir, "study-array.sbatch"));
        Assert.Contains("#SBATCH --array=0-5\n", array);                     // 2 strategies × 3 seeds
        Assert.Contains("--run-index \"$SLURM_ARRAY_TASK_ID\"", array);
        Assert.Contains($"OUT='{outDir}'", array);
        Assert.Contains("--collect", File.ReadAllText(Path.Combine(dir, "study-collect.sbatch")));
        Assert.Contains("--dependency=afterany", File.ReadAllText(Path.Combine(dir, "submit.sh")));
        Assert.True(File.GetUnixFileMode(Path.Combine(dir, "submit.sh")).HasFlag(UnixFileMode.UserExecute));

        var list = CliRunner.Run("study", file, "--out", outDir, "--list");
        Assert.Equal(6, list.StdOut.Split('\n').Count(l => l.Contains(" todo ")));
        var collect = CliRunner.Run("study", file, "--out", outDir, "--collect");
        Assert.Equal(1, collect.ExitCode);                                    // nothing has run yet
        Assert.Contains("run 5 (bias, embedded-quick, seed 3) not finished", collect.StdErr);
        Assert.True(File.Exists(Path.Combine(outDir, "report.html")));
    }

    [Fact]
    public void Run_index_out_of_range_and_built_in_flags_with_a_file_are_errors()
    {
        var file = TempFile(Small);
        var r = CliRunner.Run("study", file, "--out", Path.Combine(Path.GetDirectoryName(file)!, "o"), "--run-index", "6");
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("--run-index 6: the study has runs 0..5", r.StdErr);
        var q = CliRunner.Run("study", file, "--quick");
        Assert.Equal(1, q.ExitCode);
        Assert.Contains("--quick applies to the built-in grid", q.StdErr);
        var t = CliRunner.Run("study", file, "--task", "report");
        Assert.Equal(1, t.ExitCode);
        Assert.Contains("--task applies to the built-in grid", t.StdErr);
    }

    [Fact]
    public void Built_in_grid_lists_vqa_and_report_runs_and_task_restricts_it()
    {
        var outDir = Path.Combine(Directory.CreateTempSubdirectory("medpeft-studylist-").FullName, "out");
        int perTask = MedPeft.Tuning.TuningMethods.All.Count + 2;
        var both = CliRunner.Run("study", "--quick", "--out", outDir, "--list");
        Assert.True(both.ExitCode == 0, both.StdErr);
        var lines = both.StdOut.Split('\n').Where(l => l.Contains(" todo ")).ToList();
        Assert.Equal(2 * perTask, lines.Count);
        Assert.Equal(perTask, lines.Count(l => l.Contains("  embedded-quick-report  ")));
        var report = CliRunner.Run("study", "--quick", "--task", "report", "--out", outDir, "--list");
        Assert.All(report.StdOut.Split('\n').Where(l => l.Contains(" todo ")), l => Assert.Contains("  embedded-quick-report  ", l));
        var bad = CliRunner.Run("study", "--quick", "--task", "captions", "--list");
        Assert.Equal(2, bad.ExitCode);   // an invalid option value is a usage error, as for `train --task`
        Assert.Contains("--task captions: expected vqa or report", bad.StdErr);
    }
}
