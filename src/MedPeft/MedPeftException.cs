namespace MedPeft;

/// <summary>A user-facing error: its message is one line that names the file, field or option at fault.</summary>
public class MedPeftException(string message) : Exception(message);
