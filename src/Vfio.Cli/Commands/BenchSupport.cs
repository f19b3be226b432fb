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
}
