using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text.Json.Nodes;
using TorchSharp;

namespace MedPeft;

/// <summary>The reproducible mode (<c>--reproducible</c>): the same numbers from the same seed on any x64 processor,
/// by keeping every numeric library on one processor-independent code path (docs/reproducibility.md):
/// <list type="bullet">
/// <item>MKL's Conditional Numerical Reproducibility, <c>MKL_CBWR=COMPATIBLE,STRICT</c> (one SSE2 path for sgemm on
/// Intel and AMD alike; STRICT keeps the reduction order for a fixed thread count);</item>
/// <item>ATen's scalar kernels, <c>ATEN_CPU_CAPABILITY=default</c> (no AVX2/AVX-512 kernels, no Sleef);</item>
/// <item>oneDNN and NNPACK off (convolutions go through im2col + MKL), oneDNN pinned to SSE4.1 for anything that still
/// reaches it;</item>
/// <item>glibc's math without its FMA/AVX2 variants (<c>GLIBC_TUNABLES=glibc.cpu.hwcaps=-AVX2,-FMA,…</c>): the scalar
/// kernels' exp/log/tanh and .NET's Math.* call libm, whose FMA builds round differently;</item>
/// <item>a fixed intra-op thread count (<see cref="Threads"/>): reductions split by thread count.</item>
/// </list>
/// These are read by the native libraries when they load (glibc's tunables even before <c>main</c>), and .NET's
/// Environment.SetEnvironmentVariable does not change the native environment on Linux, so the CLI re-executes itself
/// with them (<see cref="Reexec"/>); a library user sets them before starting the process (<see cref="Variables"/>).</summary>
public static class Reproducibility
{
    /// <summary>Intra-op threads in the reproducible mode: the evidence file (docs/reproducibility/) was made with 2.</summary>
    public const int Threads = 2;

    /// <summary>Marks a process started in the reproducible mode (set with the others, so a re-exec never loops).</summary>
    public const string Marker = "MEDPEFT_REPRODUCIBLE";

    /// <summary>The environment of the reproducible mode, in a fixed order.</summary>
    public static readonly IReadOnlyList<(string Name, string Value)> Variables =
    [
        ("MKL_CBWR", "COMPATIBLE,STRICT"),
        ("ATEN_CPU_CAPABILITY", "default"),
        ("ONEDNN_MAX_CPU_ISA", "SSE41"),
        ("DNNL_MAX_CPU_ISA", "SSE41"),
        ("GLIBC_TUNABLES", "glibc.cpu.hwcaps=-AVX2,-FMA,-FMA4,-AVX512F"),
        ("OMP_NUM_THREADS", Threads.ToString()),
        ("MKL_NUM_THREADS", Threads.ToString()),
        (Marker, "1"),
    ];

    [DllImport("libc", EntryPoint = "getenv")]
    static extern IntPtr NativeGetenv([MarshalAs(UnmanagedType.LPUTF8Str)] string name);

    /// <summary>A variable as the native libraries see it (the C environment, not .NET's copy).</summary>
    public static string? NativeVariable(string name) =>
        OperatingSystem.IsWindows() ? Environment.GetEnvironmentVariable(name) : Marshal.PtrToStringUTF8(NativeGetenv(name));

    /// <summary>The variables of the mode missing or different in this process's native environment.</summary>
    public static IReadOnlyList<string> MissingVariables() =>
        Variables.Where(v => NativeVariable(v.Name) != v.Value).Select(v => $"{v.Name}={v.Value}").ToList();

    /// <summary>The settings in force once <see cref="Apply"/> has run (null: the default, processor-tuned mode).
    /// Recorded with every result of the process.</summary>
    public static JsonObject? Settings { get; private set; }

    /// <summary>Puts this process in the reproducible mode: checks that it was started with <see cref="Variables"/>
    /// (call before any other libtorch use), switches oneDNN off, fixes the thread count and checks that ATen took the
    /// scalar kernels. <paramref name="threads"/> is the user's --threads (only <see cref="Threads"/> is allowed).</summary>
    public static JsonObject Apply(int? threads)
    {
        var missing = MissingVariables();
        if (missing.Count > 0)
            throw new MedPeftException($"--reproducible: the process must start with {string.Join(" ", missing)} (the CLI re-executes itself with them; a library user sets them before starting)");
        if (threads is int t && t != Threads)
            throw new MedPeftException($"--threads {t}: --reproducible runs with {Threads} intra-op threads (reductions split by thread count)");
        torch.set_num_threads(Threads);
        var context = AtenGlobalContext();
        AtenSetUserEnabledMkldnn(context, false);
        AtenSetUserEnabledNnpack(context, false);   // NNPACK's convolutions need AVX2: used on some machines, not others
        var capability = AtenCpuCapability();
        if (capability != "DEFAULT")
            throw new MedPeftException($"--reproducible: ATen runs its {capability} kernels although ATEN_CPU_CAPABILITY=default (libtorch was initialised before the mode was applied)");
        Settings = new JsonObject
        {
            ["mode"] = "reproducible",
            ["threads"] = Threads,
            ["aten_cpu_capability"] = capability,
            ["mkldnn"] = AtenUserEnabledMkldnn(context),
            ["nnpack"] = AtenUserEnabledNnpack(context),
            ["environment"] = new JsonObject(Variables.Where(v => v.Name != Marker).Select(v => KeyValuePair.Create(v.Name, (JsonNode?)v.Value))),
            ["cpu"] = CpuInfo.Model(),
        };
        return Settings;
    }

    /// <summary>Runs this program again with the mode's environment and the same arguments, and returns its exit code
    /// (the child shares the console; Ctrl+C reaches it, and this process waits for it).</summary>
    public static int Reexec(IReadOnlyList<string> args)
    {
        var (file, prefix) = SelfCommand();
        var psi = new ProcessStartInfo(file) { UseShellExecute = false };
        foreach (var a in prefix.Concat(args)) psi.ArgumentList.Add(a);
        foreach (var (name, value) in Variables) psi.Environment[name] = value;
        Console.CancelKeyPress += (_, e) => e.Cancel = true;   // the child handles Ctrl+C; we wait for its exit code
        using var child = Process.Start(psi) ?? throw new MedPeftException($"--reproducible: cannot restart {file}");
        child.WaitForExit();
        return child.ExitCode;
    }

    /// <summary>How to start this program again: its apphost, or <c>dotnet</c> with the entry assembly.</summary>
    public static (string File, IReadOnlyList<string> Prefix) SelfCommand()
    {
        var process = Environment.ProcessPath ?? throw new MedPeftException("cannot find this program's path to restart it");
        if (Path.GetFileNameWithoutExtension(process) != "dotnet") return (process, []);
        var entry = System.Reflection.Assembly.GetEntryAssembly()?.Location;
        if (string.IsNullOrEmpty(entry)) throw new MedPeftException("cannot find this program's assembly to restart it");
        return (process, [entry]);
    }

    // ATen's global context (at::globalContext()) and two of its members, which TorchSharp does not wrap: the
    // Itanium C++ ABI passes `this` as the first argument.
    const string TorchCpu = "libtorch_cpu";
    [DllImport(TorchCpu, EntryPoint = "_ZN2at13globalContextEv")] static extern IntPtr AtenGlobalContext();
    [DllImport(TorchCpu, EntryPoint = "_ZN2at7Context20setUserEnabledMkldnnEb")] static extern void AtenSetUserEnabledMkldnn(IntPtr context, [MarshalAs(UnmanagedType.U1)] bool enabled);
    [DllImport(TorchCpu, EntryPoint = "_ZNK2at7Context17userEnabledMkldnnEv")] [return: MarshalAs(UnmanagedType.U1)] static extern bool AtenUserEnabledMkldnn(IntPtr context);
    [DllImport(TorchCpu, EntryPoint = "_ZN2at7Context20setUserEnabledNNPACKEb")] static extern void AtenSetUserEnabledNnpack(IntPtr context, [MarshalAs(UnmanagedType.U1)] bool enabled);
    [DllImport(TorchCpu, EntryPoint = "_ZNK2at7Context17userEnabledNNPACKEv")] [return: MarshalAs(UnmanagedType.U1)] static extern bool AtenUserEnabledNnpack(IntPtr context);
    // std::string at::get_cpu_capability(): returned through a hidden pointer to a 32-byte std::string
    // (libstdc++: data pointer, length, 16-byte inline buffer / capacity).
    [DllImport(TorchCpu, EntryPoint = "_ZN2at18get_cpu_capabilityB5cxx11Ev")] static extern IntPtr AtenGetCpuCapability(IntPtr result);

    /// <summary>The kernel family ATen dispatches to in this process: DEFAULT, AVX2 or AVX512.</summary>
    public static string AtenCpuCapability()
    {
        torch.InitializeDeviceType(DeviceType.CPU);   // loads libtorch_cpu before we call into it
        var buffer = Marshal.AllocHGlobal(32);
        try
        {
            AtenGetCpuCapability(buffer);
            var data = Marshal.ReadIntPtr(buffer);
            var length = Marshal.ReadInt64(buffer, 8);
            var text = Marshal.PtrToStringUTF8(data, (int)length);
            // Names are shorter than the 15-byte inline buffer, so nothing is allocated to free.
            return text;
        }
        finally { Marshal.FreeHGlobal(buffer); }
    }
}

/// <summary>The processor a result came from (Linux /proc/cpuinfo): model name and the SIMD features that select
/// kernels.</summary>
public static class CpuInfo
{
    public static readonly string[] KernelFlags = ["sse4_1", "sse4_2", "avx", "fma", "avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile"];

    public static string Model() => Field("model name") ?? RuntimeInformation.ProcessArchitecture.ToString();

    /// <summary>Which of <see cref="KernelFlags"/> the processor has, space-separated in that order.</summary>
    public static string FlagsSummary()
    {
        var flags = (Field("flags") ?? "").Split(' ', StringSplitOptions.RemoveEmptyEntries).ToHashSet();
        return string.Join(' ', KernelFlags.Where(flags.Contains));
    }

    static string? Field(string name)
    {
        const string path = "/proc/cpuinfo";
        if (!File.Exists(path)) return null;
        foreach (var line in File.ReadLines(path))
        {
            int colon = line.IndexOf(':');
            if (colon > 0 && line[..colon].Trim() == name) return line[(colon + 1)..].Trim();
        }
        return null;
    }
}
