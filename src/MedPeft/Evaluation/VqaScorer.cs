using System.Text;

namespace MedPeft.Evaluation;

/// <summary>One scored prediction.</summary>
public sealed record VqaPrediction(string Id, string Question, string Answer, string Prediction, string? AnswerType);

/// <summary>Med-VQA scores in percent. Exact match after <see cref="VqaScorer.Normalize"/> is the headline; open
/// token recall (LLaVA-Med's open-question metric) is a named secondary score. Substring matching is never used.</summary>
public sealed record VqaScores(double ClosedAccuracy, double OpenAccuracy, double OverallAccuracy, double OpenTokenRecall, int Closed, int Open)
{
    public int Total => Closed + Open;
}

public static class VqaScorer
{
    static readonly HashSet<string> Articles = ["a", "an", "the"];
    static readonly string[] NumberWords =
        ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
         "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty"];

    /// <summary>Lower-case; every character that is not a letter or digit becomes a space (so "x-ray" = "x ray" and
    /// "left." = "left"); articles (a, an, the) dropped; number words zero…twenty → digits; spaces collapsed.</summary>
    public static string Normalize(string text)
    {
        var sb = new StringBuilder(text.Length);
        foreach (var ch in text.ToLowerInvariant()) sb.Append(char.IsLetterOrDigit(ch) ? ch : ' ');
        var words = sb.ToString().Split(' ', StringSplitOptions.RemoveEmptyEntries)
            .Where(w => !Articles.Contains(w))
            .Select(w => Array.IndexOf(NumberWords, w) is var n and >= 0 ? n.ToString() : w);
        return string.Join(' ', words);
    }

    /// <summary>Closed = the dataset's answer_type when it has one (CLOSED/OPEN, any case and spacing), else the
    /// normalised answer is yes or no.</summary>
    public static bool IsClosed(string answer, string? answerType)
    {
        if (!string.IsNullOrWhiteSpace(answerType)) return answerType.Trim().Equals("CLOSED", StringComparison.OrdinalIgnoreCase);
        var a = Normalize(answer);
        return a is "yes" or "no";
    }

    public static bool ExactMatch(string answer, string prediction) => Normalize(answer) == Normalize(prediction);

    /// <summary>Share of the (distinct, normalised) ground-truth tokens that occur in the prediction.</summary>
    public static double TokenRecall(string answer, string prediction)
    {
        var gt = Normalize(answer).Split(' ', StringSplitOptions.RemoveEmptyEntries).Distinct().ToList();
        if (gt.Count == 0) return Normalize(prediction).Length == 0 ? 1 : 0;
        var pred = Normalize(prediction).Split(' ', StringSplitOptions.RemoveEmptyEntries).ToHashSet();
        return (double)gt.Count(pred.Contains) / gt.Count;
    }

    public static VqaScores Score(IEnumerable<VqaPrediction> predictions)
    {
        int closed = 0, open = 0, closedHit = 0, openHit = 0;
        double recall = 0;
        foreach (var p in predictions)
        {
            bool hit = ExactMatch(p.Answer, p.Prediction);
            if (IsClosed(p.Answer, p.AnswerType)) { closed++; if (hit) closedHit++; }
            else { open++; if (hit) openHit++; recall += TokenRecall(p.Answer, p.Prediction); }
        }
        static double Pct(double num, int den) => den == 0 ? double.NaN : 100.0 * num / den;
        return new VqaScores(Pct(closedHit, closed), Pct(openHit, open), Pct(closedHit + openHit, closed + open), Pct(recall, open), closed, open);
    }
}
