using System.CommandLine;

namespace MedPeft.Cli;

/// <summary>Options every compute command shares: device, threads, seed.</summary>
sealed class RuntimeOptions
{
    public readonly Option<string> Device = new("--device") { Description = "cpu, cuda, cuda:N or auto", DefaultValueFactory = _ => "cpu" };
    public readonly Option<int?> Threads = new("--threads") { Description = "CPU threads for libtorch (default: all cores)" };
    public readonly Option<long> Seed = new("--seed") { Description = "random seed (same seed ⇒ same numbers on CPU)", DefaultValueFactory = _ => 42 };

    public void AddTo(Command c) { c.Add(Device); c.Add(Threads); c.Add(Seed); }

    /// <summary>Applies threads and seed; returns the device string (validated).</summary>
    public string Apply(ParseResult r)
    {
        TorchRuntime.SetThreads(r.GetValue(Threads));
        TorchRuntime.Seed(r.GetValue(Seed));
        var device = r.GetValue(Device)!;
        TorchRuntime.ResolveDevice(device);
        return device;
    }
}
