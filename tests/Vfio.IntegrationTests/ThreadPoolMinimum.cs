using System.Runtime.CompilerServices;

namespace Vfio.IntegrationTests;

/// <summary>
/// Raw peers in these tests read with blocking socket calls (they behave like a blocking C client), and xunit runs
/// test classes in parallel on the thread pool. With the default minimum of one thread per core, a few blocked
/// peers leave the servers under test waiting for a thread for seconds (the pool adds about one per second), and a
/// 10 s receive timeout then fails a test whose server was merely never scheduled.
/// </summary>
internal static class ThreadPoolMinimum
{
#pragma warning disable CA2255 // a test assembly: the pool must be sized before any test runs
    [ModuleInitializer]
#pragma warning restore CA2255
    internal static void Raise()
    {
        ThreadPool.GetMinThreads(out int workers, out int io);
        ThreadPool.SetMinThreads(Math.Max(workers, 64), Math.Max(io, 64));
    }
}
