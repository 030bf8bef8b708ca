namespace MedPeft;

/// <summary>A user-facing error: its message is one line that names the file, field or option at fault.</summary>
public class MedPeftException(string message) : Exception(message);

/// <summary>Training stopped because the loss became non-finite (NaN/∞): the learning rate is too high. The LR range
/// test records such a trial as diverged; every other error propagates.</summary>
public sealed class TrainingDivergedException(string message) : MedPeftException(message);
