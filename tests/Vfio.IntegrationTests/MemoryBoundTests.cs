using System.Globalization;

namespace Vfio.IntegrationTests;

/// <summary>
/// The process's memory beyond the device state while migrating: bounded and flat in the state size. A bounded
/// slow test (about 10-30 s for the demo: two sample devices of 1 GiB each plus a 64 MiB run; 15-45 s for the two
/// serve processes of a 1 GiB migrate, and for each send and receive of 1 GiB), not a timing assertion.
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
        long[] peaks = await PeaksUntilExitAsync("migrate", migrate, source, destination);
        Assert.True(await migrate.WaitAsync(TimeSpan.FromSeconds(10)) == 0, migrate.Error);
        AssertBeyondState("source serve", peaks[1], size);
        AssertBeyondState("destination serve", peaks[2], size);
        Assert.True(peaks[0] > 0, "migrate: its peak RSS was never read: the polling missed it");
        Assert.True(peaks[0] <= MigrateBound, $"migrate: peak RSS {peaks[0] / MiB} MiB > {MigrateBound / MiB} MiB");
    }

    // send and receive of a 1 GiB device over sealed channels (the source dirtying 16 MiB/s): each process holds one
    // device state and may add at most the bound to it, however many channels. With 2 the receiver's reorder buffer
    // fills to its cap on every run (the 64 MiB it had before took receive to 62-64 MiB beyond its state); with 8 the
    // sender's queues and the receiving channels' reads used to add about 4 MiB per channel (send 65-68 MiB).
    [Theory]
    [InlineData(2)]
    [InlineData(8)]
    public async Task SendAndReceive_PeakRssBeyondTheDeviceState_IsBoundedWhileMigratingOneGiB(int channels)
    {
        const long size = 1024 * MiB;
        string token = Path.Combine(Path.GetTempPath(), "vfio-mig-token-" + Guid.NewGuid().ToString("N")[..10]);
        Vfio.Net.NetToken.New().WriteNewFile(token);
        try
        {
            using var receive = new TestSupport.CliProcess("receive", "--listen", "127.0.0.1:0", "--into", "sample:size=1GiB,seed=2", "--token-file", token, "--json");
            int port = await ListeningPortAsync(receive);
            using var send = new TestSupport.CliProcess("send", "--from", "sample:size=1GiB,dirty-rate=16MiB/s,seed=1", "--to", $"tcp://127.0.0.1:{port}",
                "--token-file", token, "--channels", channels.ToString(CultureInfo.InvariantCulture), "--json");
            long[] peaks = await PeaksUntilExitAsync("send", send, receive);
            Assert.True(await send.WaitAsync(TimeSpan.FromSeconds(10)) == 0, send.Error);
            Assert.True(await receive.WaitAsync(TimeSpan.FromSeconds(30)) == 0, receive.Error);
            peaks[1] = Math.Max(peaks[1], Vfio.Diagnostics.ProcessMemory.PeakRssBytes(receive.Process.Id));
            AssertBeyondState("send", peaks[0], size);
            AssertBeyondState("receive", peaks[1], size);
        }
        finally
        {
            File.Delete(token);
        }
    }

    // Polls the peak RSS (VmHWM) of `driver` (named `what` in a failure) and `others` every 20 ms until `driver` exits (5 minutes at most), then
    // once more for the others (whose VmHWM outlives the driver). Returns the peaks in that order.
    private static async Task<long[]> PeaksUntilExitAsync(string what, TestSupport.CliProcess driver, params TestSupport.CliProcess[] others)
    {
        var all = new[] { driver }.Concat(others).ToArray();
        long[] peaks = new long[all.Length];
        void Poll()
        {
            for (int i = 0; i < all.Length; i++)
                peaks[i] = Math.Max(peaks[i], Vfio.Diagnostics.ProcessMemory.PeakRssBytes(all[i].Process.Id));
        }
        var until = DateTime.UtcNow + TimeSpan.FromMinutes(5);
        while (!driver.Process.HasExited)
        {
            Assert.True(DateTime.UtcNow < until, $"{what} of 1 GiB still running after 5 minutes; stderr: {driver.Error}");
            Poll();
            await Task.Delay(20);
        }
        Poll();
        return peaks;
    }

    private static void AssertBeyondState(string what, long peak, long size)
    {
        Assert.True(peak >= size, $"{what}: peak RSS {peak / MiB} MiB is below its {size / MiB} MiB state: the polling missed it");
        Assert.True(peak - size <= Bound, $"{what}: RSS minus device state {(peak - size) / MiB} MiB > {Bound / MiB} MiB");
    }

    // The port `receive --listen 127.0.0.1:0` printed on stderr ("listening on 127.0.0.1:PORT (…)").
    private static async Task<int> ListeningPortAsync(TestSupport.CliProcess receive)
    {
        var until = DateTime.UtcNow + TimeSpan.FromMinutes(3);
        while (true)
        {
            var match = System.Text.RegularExpressions.Regex.Match(receive.Error, @"listening on 127\.0\.0\.1:(\d+) ");
            if (match.Success)
                return int.Parse(match.Groups[1].Value, CultureInfo.InvariantCulture);
            Assert.True(!receive.Process.HasExited && DateTime.UtcNow < until, $"receive did not print 'listening on' (exited: {receive.Process.HasExited}); stderr: {receive.Error}");
            await Task.Delay(20);
        }
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
