using Vfio.Engine;
using Vfio.Migration;
using Vfio.Sample;
using Vfio.Stream;

namespace Vfio.Tests.Engine;

/// <summary>PRECOPY_INFOv2 and REINIT end to end (spec §4.7; vmm-side.md §1.1 step 3 and §1.4).</summary>
public class ReinitTests
{
    private const VfioMigrationFlags Caps3 = VfioMigrationFlags.StopCopy | VfioMigrationFlags.P2P;
    private const VfioMigrationFlags Caps5 = VfioMigrationFlags.StopCopy | VfioMigrationFlags.PreCopy;
    private const VfioMigrationFlags Caps7 = VfioMigrationFlags.StopCopy | VfioMigrationFlags.P2P | VfioMigrationFlags.PreCopy;

    [Fact]
    public async Task Spec4_7_Source_OptsInToPrecopyInfoV2_WhenTheDeviceOffersIt()
    {
        await using var devices = new EngineTestDevices(1, Caps7);
        Assert.False(devices.SourceDevices[0].PrecopyInfoV2Enabled);
        var stats = await MigrationEngine.MigrateAsync(devices.Sources, devices.Destinations, null, null, TestContext.Current.CancellationToken);
        Assert.True(devices.SourceDevices[0].PrecopyInfoV2Enabled);
        Assert.True(stats.Devices[0].PrecopyInfoV2);
        Assert.Equal(0, stats.Devices[0].Reinits);
    }

    [Fact]
    public async Task Spec4_7_Source_DoesNotAskForTheOptIn_WithoutPreCopy()
    {
        await using var devices = new EngineTestDevices(1, Caps3);
        var source = new FaultyDevice(devices.Sources[0]);
        var stats = await MigrationEngine.MigrateAsync([source], devices.Destinations, null, null, TestContext.Current.CancellationToken);
        Assert.Equal(0, source.PrecopyInfoV2Requests);
        Assert.False(stats.Devices[0].PrecopyInfoV2);
    }

    [Fact]
    public async Task Spec4_7_ReinitWithoutTheOptIn_IsAnEcho_AndChangesNothing()
    {
        // An old kernel (no feature 12): the flag cannot be trusted, so one marker and one ack as before.
        await using var devices = new EngineTestDevices(1, Caps7);
        var source = new FaultyDevice(devices.Sources[0]) { ReinitOnce = true, OffersPrecopyInfoV2 = false };
        var (bytes, stats) = await StreamCapture.MigrateAsync([source], devices.Destinations);
        var frames = await StreamCapture.DecodeAsync(bytes);
        Assert.Equal(1, source.PrecopyInfoV2Requests);
        Assert.Single(frames, f => f.Type == MigrationFrameType.InitDataSent);
        Assert.False(stats.Devices[0].PrecopyInfoV2);
        Assert.Equal(0, stats.Devices[0].Reinits);
        Assert.Equal(devices.SourceDevices[0].ComputeSha256(), devices.DestinationDevices[0].ComputeSha256());
    }

    [Fact]
    public async Task VmmSide1_4_ReinitAtTheSwitchover_FailsWithEagain_AndTheSourceRunsAgain()
    {
        await using var devices = new EngineTestDevices(1, Caps7);
        var before = devices.SourceDevices[0].ComputeSha256();
        var source = new FaultyDevice(devices.Sources[0]) { ReinitInPreCopyP2P = true };
        var ex = await Assert.ThrowsAsync<MigrationException>(() => MigrationEngine.MigrateAsync([source], devices.Destinations, null, null, TestContext.Current.CancellationToken));
        Assert.Equal(Errno.EAGAIN, ex.Errno);
        Assert.Equal(MigrationPhase.Switchover, ex.Phase);
        Assert.Contains("REINIT", ex.Message, StringComparison.Ordinal);
        Assert.Equal(VfioMigrationState.Running, devices.SourceDevices[0].State);
        Assert.Equal(VfioMigrationState.Running, devices.DestinationDevices[0].State);
        Assert.Equal(before, devices.SourceDevices[0].ComputeSha256());
    }

    [Fact]
    public async Task VmmSide1_4_ReinitAtTheSwitchover_IsNotCheckedWhenAcksAreNotRequired()
    {
        await using var devices = new EngineTestDevices(1, Caps7);
        var source = new FaultyDevice(devices.Sources[0]) { ReinitInPreCopyP2P = true };
        var stats = await MigrationEngine.MigrateAsync([source], devices.Destinations, MigrationOptions.Default with { RequireSwitchoverAck = false }, null, TestContext.Current.CancellationToken);
        Assert.Equal(devices.SourceDevices[0].ComputeSha256(), devices.DestinationDevices[0].ComputeSha256());
        Assert.Equal(0, stats.Devices[0].Reinits);
    }

    [Theory]
    [InlineData(0x5ul)]
    [InlineData(0x7ul)]
    public async Task Spec4_7_SampleDeviceReinitMidPreCopy_InitialDataIsSentAndAcknowledgedTwice(ulong caps)
    {
        // The real device: after half its initial pass it re-initialises; every page becomes initial data again.
        const long size = 1 << 20;
        var s = new SampleDevice(new SampleDeviceOptions { SizeBytes = size, Capabilities = (VfioMigrationFlags)caps, Seed = 7, ReinitAfterBytes = size / 2 });
        var d = new SampleDevice(new SampleDeviceOptions { SizeBytes = size, Capabilities = (VfioMigrationFlags)caps, Seed = 8 });
        await using var source = new InProcessMigrationDevice(s, "sample:src", ownsDevice: true);
        await using var destination = new InProcessMigrationDevice(d, "sample:dst", ownsDevice: true);

        var (bytes, stats) = await StreamCapture.MigrateAsync([source], [destination]);
        var frames = await StreamCapture.DecodeAsync(bytes);

        Assert.Equal(1, stats.Devices[0].Reinits);
        Assert.True(stats.Devices[0].InitialDataAcknowledged);
        int switchover = frames.FindIndex(f => f.Type == MigrationFrameType.Switchover);
        var markers = frames.Select((f, i) => (f, i)).Where(x => x.f.Type == MigrationFrameType.InitDataSent).Select(x => x.i).ToList();
        Assert.Equal(2, markers.Count);
        Assert.True(markers[^1] < switchover);
        // The second initial pass re-sent every page before the second marker.
        long preCopy = frames.Take(markers[1]).Where(f => f.Type == MigrationFrameType.PreCopyData).Sum(f => (long)f.Length);
        Assert.True(preCopy >= size + (size / 2), $"{preCopy} pre-copy bytes before the second marker");
        Assert.Equal(s.ComputeSha256(), d.ComputeSha256());
    }

    [Fact]
    public void Spec4_7_SampleDevice_ReportsReinitOnce_AfterItsInitialDataWasRead_AndOnlyAfterTheOptIn()
    {
        const long size = 64 << 10;
        using var optedIn = new SampleDevice(new SampleDeviceOptions { SizeBytes = size, Capabilities = Caps5, ReinitAfterBytes = 8192 });
        using var legacy = new SampleDevice(new SampleDeviceOptions { SizeBytes = size, Capabilities = Caps5, ReinitAfterBytes = 8192 });
        optedIn.EnablePrecopyInfoV2();
        foreach (var (device, v2) in new[] { (optedIn, true), (legacy, false) })
        {
            var session = device.SetState(VfioMigrationState.PreCopy)!;
            var buffer = new byte[size * 2];
            Assert.True(session.Read(buffer) > size);
            var done = session.GetPrecopyInfo();
            Assert.Equal(0ul, done.InitialBytes);
            Assert.False(done.Reinit);
            var reinit = session.GetPrecopyInfo();
            var after = session.GetPrecopyInfo();
            Assert.Equal(v2, reinit.Reinit);
            Assert.False(after.Reinit);
            // Either way the initial pass restarted: every page is initial data again.
            Assert.True(reinit.InitialBytes >= (ulong)size, $"{reinit.InitialBytes} initial bytes after the re-init");
        }
    }
}
