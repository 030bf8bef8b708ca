using MedPeft.Evaluation;

namespace MedPeft.Tests.Evaluation;

public class VqaScorerTests
{
    [Theory]
    [InlineData("Yes", "yes")]
    [InlineData(" Right kidney ", "right kidney")]
    [InlineData("The left lung.", "left lung")]
    [InlineData("an X-Ray", "x ray")]
    [InlineData("Two", "2")]
    [InlineData("twenty one", "20 1")]
    [InlineData("T2", "t2")]
    [InlineData("", "")]
    [InlineData("  ?!  ", "")]
    public void Normalize_follows_the_documented_rules(string input, string expected) =>
        Assert.Equal(expected, VqaScorer.Normalize(input));

    [Theory]
    [InlineData("yes", null, true)]
    [InlineData("No", null, true)]
    [InlineData("kidney", null, false)]
    [InlineData("kidney", "CLOSED ", true)]    // VQA-RAD's trailing space
    [InlineData("yes", "OPEN", false)]         // the dataset's own type wins
    [InlineData("one", "closed", true)]
    public void Closed_uses_answer_type_when_present(string answer, string? type, bool closed) =>
        Assert.Equal(closed, VqaScorer.IsClosed(answer, type));

    [Fact]
    public void Substring_is_not_a_match()
    {
        Assert.False(VqaScorer.ExactMatch("no", "nodule"));
        Assert.Equal(0, VqaScorer.TokenRecall("no", "nodule"));
    }

    [Fact]
    public void Token_recall_is_the_share_of_ground_truth_tokens_found()
    {
        Assert.Equal(2.0 / 3, VqaScorer.TokenRecall("left upper lung", "the upper lung lobe"), 10);
        Assert.Equal(1.0, VqaScorer.TokenRecall("lung", "in the lung"), 10);
    }

    [Fact]
    public void Score_splits_closed_and_open_in_percent()
    {
        var s = VqaScorer.Score([
            new("1", "q", "yes", "Yes", null),
            new("2", "q", "no", "yes", null),
            new("3", "q", "left lung", "left lung.", null),
            new("4", "q", "heart", "lung", "OPEN"),
            new("5", "q", "2", "two", "OPEN"),
        ]);
        Assert.Equal((2, 3), (s.Closed, s.Open));
        Assert.Equal(50, s.ClosedAccuracy, 10);
        Assert.Equal(200.0 / 3, s.OpenAccuracy, 10);
        Assert.Equal(60, s.OverallAccuracy, 10);
        Assert.Equal(200.0 / 3, s.OpenTokenRecall, 10);
    }

    [Fact]
    public void Empty_category_is_NaN_not_zero()
    {
        var s = VqaScorer.Score([new("1", "q", "yes", "yes", null)]);
        Assert.True(double.IsNaN(s.OpenAccuracy));
        Assert.Equal(100, s.OverallAccuracy);
    }
}
