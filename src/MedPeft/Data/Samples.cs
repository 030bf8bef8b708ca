namespace MedPeft.Data;

/// <summary>One Med-VQA question about one image, as every dataset reader yields it.</summary>
/// <param name="Id">The dataset's own question id (qid), as a string.</param>
/// <param name="ImagePath">Absolute path of the image file.</param>
/// <param name="AnswerType">"CLOSED" / "OPEN" when the dataset says so (trimmed, upper case); null otherwise.</param>
public sealed record VqaSample(string Id, string ImagePath, string Question, string Answer, string? AnswerType);

/// <summary>One report-generation study: one or more images (IU-Xray has two views) and the report text.</summary>
public sealed record ReportSample(string Id, IReadOnlyList<string> ImagePaths, string Report);

/// <summary>The canonical split names; readers map each dataset's own names (val, validate, …) to these.</summary>
public static class Splits
{
    public const string Train = "train";
    public const string Validation = "validation";
    public const string Test = "test";
    public static readonly string[] All = [Train, Validation, Test];
}
