using TorchSharp;
using static TorchSharp.torch;

namespace MedPeft;

/// <summary>Process-wide runtime settings: device, threads, seeds.</summary>
public static class TorchRuntime
{
    /// <summary>"cpu", "cuda" (fails clearly without CUDA), "cuda:N" or "auto" (CUDA when libtorch has it).</summary>
    public static Device ResolveDevice(string spec)
    {
        var s = spec.Trim().ToLowerInvariant();
        if (s == "auto") return torch.cuda.is_available() ? torch.CUDA : torch.CPU;
        if (s == "cpu") return torch.CPU;
        if (s == "cuda" || s.StartsWith("cuda:"))
        {
            if (!torch.cuda.is_available())
                throw new MedPeftException($"--device {spec}: CUDA is not available (this build uses the CPU libtorch; build with -p:LibTorchPackage=libtorch-cuda-12.8-linux-x64 on a GPU machine)");
            return torch.device(s);
        }
        throw new MedPeftException($"--device {spec}: expected cpu, cuda, cuda:N or auto");
    }

    public static void SetThreads(int? threads)
    {
        if (threads is null) return;
        if (threads < 1) throw new MedPeftException($"--threads {threads}: must be at least 1");
        torch.set_num_threads(threads.Value);
    }

    /// <summary>Seeds libtorch (weights init, dropout). Data order uses its own System.Random seeded the same way,
    /// so one seed gives the same numbers on CPU run after run.</summary>
    public static void Seed(long seed)
    {
        torch.manual_seed(seed);
        if (torch.cuda.is_available()) torch.cuda.manual_seed_all(seed);
    }
}
