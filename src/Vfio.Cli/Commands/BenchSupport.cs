using System.Diagnostics;

namespace Vfio.Cli.Commands;

/// <summary>Helpers shared by the <c>bench</c> commands.</summary>
internal static class BenchSupport
{
    /// <summary>
    /// Collects garbage before a clock starts: a fresh multi-GiB device triggers a background gen2 GC that would
    /// otherwise compete for the CPU mid-measurement.
    /// </summary>
    public static void Settle()
    {
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Forced, blocking: true, compacting: false);
        GC.WaitForPendingFinalizers();
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Forced, blocking: true, compacting: false);
    }

    /// <summary>Starts a clock that measures wall time and this process's CPU time (user + system, all threads).</summary>
    public static BenchClock StartClock() => new();
}

/// <summary>
/// Wall and CPU time of one timed section. CPU seconds per byte hold steady on a loaded machine where wall time
/// does not, so the benches print both.
/// </summary>
internal sealed class BenchClock
{
    private readonly Stopwatch _wall = Stopwatch.StartNew();
    private readonly TimeSpan _cpu = Process.GetCurrentProcess().TotalProcessorTime;

    /// <summary>(wall seconds, CPU seconds) since the clock started.</summary>
    public (double Seconds, double CpuSeconds) Read()
        => (_wall.Elapsed.TotalSeconds, (Process.GetCurrentProcess().TotalProcessorTime - _cpu).TotalSeconds);
}
