using System.Globalization;

namespace Vfio.IntegrationTests;

/// <summary>
/// The process's memory beyond the device state while migrating: bounded and flat in the state size. A bounded
/// slow test (about 10-30 s for the demo: two sample devices of 1 GiB each plus a 64 MiB run; 15-45 s for the two
/// serve processes of a 1 GiB migrate), not a timing assertion.
/// </summary>
public class MemoryBoundTests
{
    private const long MiB = 1 << 20;

    // The bound for the shipped NativeAOT binary (VFIO_MIG_BINARY, scripts/aot-smoke.sh). Under the JIT the
    // runtime's compiler and the code it compiles add about 30 MiB (measured 62 MiB in all for the 1 GiB demo).
    private static long Bound => TestSupport.PublishedCli is null ? 48 * MiB + 40 * MiB : 48 * MiB;

    // migrate runs more code than the others (the engine's two halves, two vfio-user clients, the SHA-256 read-back):
    // under the JIT that compiled code added about 46 MiB (89 MiB in all, against 43 MiB for the shipped binary).
    private static long MigrateBound => TestSupport.PublishedCli is null ? Bound + (24 * MiB) : Bound;

    [Fact]
    public async Task Demo_PeakRssBeyondTheDeviceState_IsBoundedAndFlatInTheStateSize()
    {
        long small = await OverheadAsync(64 * MiB);
        long large = await OverheadAsync(1024 * MiB);

        Assert.True(large <= Bound, $"1 GiB demo: RSS minus device state {large / MiB} MiB > {Bound / MiB} MiB");
        // Flat: a 16× larger state may not cost more than a few MiB beyond it (page bitmaps, 32 KiB per GiB each).
        Assert.True(large - small <= 16 * MiB, $"RSS minus device state grew from {small / MiB} MiB (64 MiB state) to {large / MiB} MiB (1 GiB state)");
    }

    // The two serve processes of a 1 GiB migrate (source dirtying 16 MiB/s): each holds one device state and may add
    // at most the bound to it. The migrate process between them holds no device state (it streams it, and reads
    // both back for the SHA-256 check): its whole peak is held to the bound.
    [Fact]
    public async Task ServeAndMigrate_PeakRssBeyondTheDeviceState_IsBoundedWhileMigratingOneGiB()
    {
        const long size = 1024 * MiB;
        string a = TestSupport.TempSocketPath(), b = TestSupport.TempSocketPath();
        using var source = new TestSupport.CliProcess("serve", "--socket", a, "--size", "1GiB", "--dirty-rate", "16MiB/s", "--seed", "1");
        using var destination = new TestSupport.CliProcess("serve", "--socket", b, "--size", "1GiB", "--seed", "2");
        await source.WaitForOutputAsync("serving sample device", TimeSpan.FromMinutes(3));
        await destination.WaitForOutputAsync("serving sample device", TimeSpan.FromMinutes(3));
        using var migrate = new TestSupport.CliProcess("migrate", "--from", "unix:" + a, "--to", "unix:" + b, "--json");
        long peakSource = 0, peakDestination = 0, peakMigrate = 0;
        var until = DateTime.UtcNow + TimeSpan.FromMinutes(5);
        while (!migrate.Process.HasExited)
        {
            Assert.True(DateTime.UtcNow < until, $"migrate of 1 GiB still running after 5 minutes; stderr: {migrate.Error}");
            peakSource = Math.Max(peakSource, Vfio.Diagnostics.ProcessMemory.PeakRssBytes(source.Process.Id));
            peakDestination = Math.Max(peakDestination, Vfio.Diagnostics.ProcessMemory.PeakRssBytes(destination.Process.Id));
            peakMigrate = Math.Max(peakMigrate, Vfio.Diagnostics.ProcessMemory.PeakRssBytes(migrate.Process.Id));
            await Task.Delay(20);
        }
        Assert.True(await migrate.WaitAsync(TimeSpan.FromSeconds(10)) == 0, migrate.Error);
        peakSource = Math.Max(peakSource, Vfio.Diagnostics.ProcessMemory.PeakRssBytes(source.Process.Id));
        peakDestination = Math.Max(peakDestination, Vfio.Diagnostics.ProcessMemory.PeakRssBytes(destination.Process.Id));
        foreach (var (what, peak) in new[] { ("source", peakSource), ("destination", peakDestination) })
        {
            Assert.True(peak >= size, $"{what} serve: peak RSS {peak / MiB} MiB is below its 1 GiB state: the polling missed it");
            Assert.True(peak - size <= Bound, $"{what} serve: RSS minus device state {(peak - size) / MiB} MiB > {Bound / MiB} MiB");
        }
        Assert.True(peakMigrate > 0, "migrate: its peak RSS was never read: the polling missed it");
        Assert.True(peakMigrate <= MigrateBound, $"migrate: peak RSS {peakMigrate / MiB} MiB > {MigrateBound / MiB} MiB");
    }

    // Peak RSS (VmHWM, polled until the process exits) minus the state of the source and the destination device.
    private static async Task<long> OverheadAsync(long size)
    {
        using var demo = new TestSupport.CliProcess("demo", "--size", (size / MiB).ToString(CultureInfo.InvariantCulture) + "MiB", "--dirty-rate", "16MiB/s", "--json");
        long peak = 0;
        var until = DateTime.UtcNow + TimeSpan.FromMinutes(5);
        while (!demo.Process.HasExited)
        {
            Assert.True(DateTime.UtcNow < until, $"demo --size {size} still running after 5 minutes; stderr: {demo.Error}");
            peak = Math.Max(peak, Vfio.Diagnostics.ProcessMemory.PeakRssBytes(demo.Process.Id));
            await Task.Delay(20);
        }
        Assert.Equal(0, await demo.WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.True(peak >= 2 * size, $"peak RSS {peak / MiB} MiB is below the two devices' {2 * size / MiB} MiB: the polling missed the run");
        return peak - (2 * size);
    }
}
