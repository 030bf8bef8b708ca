using System.Text.Json.Nodes;
using MedPeft.Experiments;

namespace MedPeft.Tests.Experiments;

public class ResultsStoreTests
{
    static StudyRun[] Runs() => StudyPlan.Expand(StudyFile.Parse("models: [embedded]\ndatasets: [{format: embedded}]\nstrategies: [ln, bias]", "s.yaml")).Runs.ToArray();
    static string Db() => Path.Combine(Directory.CreateTempSubdirectory("medpeft-store-").FullName, "results.db");

    [Fact]
    public void A_run_is_claimed_by_one_process_recorded_once_and_then_skipped()
    {
        var db = Db();
        var runs = Runs();
        using var a = new ResultsStore(db);
        using var b = new ResultsStore(db);
        Assert.Equal(ResultsStore.ClaimOutcome.Claimed, a.TryClaim(runs[0]));
        Assert.Equal(ResultsStore.ClaimOutcome.Busy, b.TryClaim(runs[0]));    // a live claim
        Assert.Equal(ResultsStore.ClaimOutcome.Claimed, b.TryClaim(runs[1]));
        Assert.True(a.Finish(runs[0], new JsonObject { ["x"] = 1 }));
        Assert.False(b.Finish(runs[0], new JsonObject { ["x"] = 2 }));        // not b's claim
        Assert.Equal(ResultsStore.ClaimOutcome.Done, b.TryClaim(runs[0]));
        var done = b.Finished().Single();
        Assert.Equal((runs[0].Key, 1), (done.Key, done.Result["x"]!.GetValue<int>()));
        Assert.Equal(runs[0].Config().ToJsonString(), done.Config.ToJsonString());
        Assert.Single(b.Events(), e => e.Kind == "finished");
    }

    [Fact]
    public void A_stale_claim_is_retaken_and_the_first_owner_can_no_longer_record()
    {
        var db = Db();
        var run = Runs()[0];
        using var a = new ResultsStore(db, lease: TimeSpan.FromMilliseconds(200));
        using var b = new ResultsStore(db, lease: TimeSpan.FromMilliseconds(200));
        Assert.Equal(ResultsStore.ClaimOutcome.Claimed, a.TryClaim(run));
        Assert.Equal(ResultsStore.ClaimOutcome.Busy, b.TryClaim(run));
        Thread.Sleep(400);                                                      // a stops beating
        Assert.Equal(ResultsStore.ClaimOutcome.Claimed, b.TryClaim(run));
        Assert.False(a.Finish(run, new JsonObject()));
        Assert.True(b.Finish(run, new JsonObject()));
        Assert.Equal(["claimed", "retaken", "finished"], b.Events().Select(e => e.Kind));
    }

    [Fact]
    public void Heartbeats_keep_a_claim_alive_past_the_lease()
    {
        var db = Db();
        var run = Runs()[0];
        using var a = new ResultsStore(db, lease: TimeSpan.FromMilliseconds(300));
        using var b = new ResultsStore(db, lease: TimeSpan.FromMilliseconds(300));
        a.TryClaim(run);
        for (int i = 0; i < 4; i++) { Thread.Sleep(120); a.Heartbeat(run.Key); }
        Assert.Equal(ResultsStore.ClaimOutcome.Busy, b.TryClaim(run));
    }

    [Fact]
    public void A_failed_run_is_released_for_another_attempt()
    {
        var db = Db();
        var run = Runs()[0];
        using var a = new ResultsStore(db);
        a.TryClaim(run);
        a.Fail(run, "boom");
        using var b = new ResultsStore(db);
        Assert.Equal(ResultsStore.ClaimOutcome.Claimed, b.TryClaim(run));
        Assert.Equal(["claimed", "failed", "claimed"], b.Events().Select(e => e.Kind));
    }
}
