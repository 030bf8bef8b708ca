using MedPeft.Data;

namespace MedPeft.Tests.Evaluation;

/// <summary>
/// R2Gen's clean_report_iu_xray / clean_report_mimic_cxr (cuhksz-nlp/R2Gen modules/tokenizers.py). Each expected
/// value was derived by hand from the Python, step by step as commented (and agrees with running the Python).
/// Both cleaners: replacements → strip → lower → split('. ') → per sentence: drop " / \ ', strip, lower, delete
/// regex class [.,?;*!%^&_+():-\[\]{}] (":-\[" is the range U+003A..U+005B) → ' . '.join(...) + ' .'.
/// </summary>
public class ReportCleaningTests
{
    [Theory]
    // No list markers: split('. ') → ["the heart is normal in size", "the lungs are clear."]; the final "." is
    // deleted by the regex.
    [InlineData("The heart is normal in size. The lungs are clear.",
        "the heart is normal in size . the lungs are clear .")]
    // '1. ' is deleted, then '. 2. ' → '. ': "Heart size normal. No pneumothorax, effusion or consolidation."
    // → sentences "heart size normal", "no pneumothorax, effusion or consolidation." → ',' and '.' deleted.
    [InlineData("1. Heart size normal. 2. No pneumothorax, effusion or consolidation.",
        "heart size normal . no pneumothorax effusion or consolidation .")]
    // "..." → ".." → "." (3 passes of '..' → '.'); "2.5" is not a sentence break (no space) and loses its '.';
    // '(' ')' ':' ';' '<' '>' '"' deleted (':' ';' '<' '>' through the range); '-' kept; "T8" lowered.
    [InlineData("XXXX opacity (2.5 cm) at the left base... Heart size: normal. <unk> x-ray; T8 \"old\" fracture.",
        "xxxx opacity 25 cm at the left base . heart size normal . unk x-ray t8 old fracture .")]
    // ". . " splits into ["no effusion", "", "clear."]: R2Gen's `!= []` filter keeps the empty sentence.
    [InlineData("No effusion. . Clear.", "no effusion .  . clear .")]
    // "" → [""] → "" + " ."
    [InlineData("", " .")]
    // No final period: one sentence; ',' deleted, '/' dropped ("and/or" → "andor").
    [InlineData("Stable cardiomediastinal silhouette, no focal airspace disease and/or effusion",
        "stable cardiomediastinal silhouette no focal airspace disease andor effusion .")]
    // '1. ' also matches the tail of "11. ": "Lesion 11. Normal." → "Lesion 1Normal."
    [InlineData("Lesion 11. Normal.", "lesion 1normal .")]
    public void CleansLikeR2GenIuXray(string report, string expected) =>
        Assert.Equal(expected, ReportCleaning.CleanIuXray(report));

    [Theory]
    // '\n' → ' ' gives "FINDINGS:  The lungs are clear.  No effusion. 1. Stable. 2. No pneumothorax." (double
    // spaces collapsed by the '  ' → ' ' passes); '1. ' deleted; '. 2. ' → '. '; "findings:" loses ':'.
    [InlineData("FINDINGS:\n\nThe lungs are clear.  No effusion.\n1. Stable.\n2. No pneumothorax.",
        "findings the lungs are clear . no effusion . stable . no pneumothorax .")]
    // "___" → "__" → "_" by the '__' → '_' passes; split('. ') → ["dr", "_ was notified at _ p.m."]; the sentence is
    // stripped before '_' and '.' are deleted, so its leading/inner spaces survive: " was notified at  pm".
    [InlineData("Dr. ___ was notified at ___ p.m.", "dr .  was notified at  pm .")]
    public void CleansLikeR2GenMimicCxr(string report, string expected) =>
        Assert.Equal(expected, ReportCleaning.CleanMimicCxr(report));

    [Fact]
    public void DotRunsAreCollapsedAFixedNumberOfTimes()
    {
        // '..' → '.' runs 3 times for IU X-ray, 8 times for MIMIC-CXR: 16 dots → 8 → 4 → 2 (IU) or → 1 (MIMIC).
        // IU: "a .. b" splits on the ". " after the 2nd dot into ["a .", "b"]; "a ." is stripped *before* the
        // regex deletes its '.', leaving "a " → "a " + " . " + "b" + " ." = "a  . b .".
        // MIMIC: "a . b" → ["a", "b"] → "a . b .".
        string dots = new('.', 16);
        Assert.Equal("a  . b .", ReportCleaning.CleanIuXray($"A {dots} B"));
        Assert.Equal("a . b .", ReportCleaning.CleanMimicCxr($"A {dots} B"));
    }

    [Theory]
    [InlineData("the heart is normal . lungs clear .", 4, "the heart is normal")]
    [InlineData("dr .  was notified at  pm .", 100, "dr . was notified at pm .")]
    [InlineData("a b", 0, "")]
    [InlineData(" .", 5, ".")]
    public void TruncateKeepsTheFirstTokens(string cleaned, int maxTokens, string expected) =>
        Assert.Equal(expected, ReportCleaning.Truncate(cleaned, maxTokens));
}
