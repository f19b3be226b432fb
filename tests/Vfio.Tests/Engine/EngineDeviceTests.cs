using Microsoft.Extensions.Logging;
using Vfio.Engine;
using Vfio.Migration;
using Vfio.Stream;

namespace Vfio.Tests.Engine;

/// <summary>The engine's per-device objects and the run context both halves share, one rule at a time.</summary>
public class EngineDeviceTests
{
    private const VfioMigrationFlags Caps3 = VfioMigrationFlags.StopCopy | VfioMigrationFlags.P2P;
    private const VfioMigrationFlags Caps7 = VfioMigrationFlags.StopCopy | VfioMigrationFlags.P2P | VfioMigrationFlags.PreCopy;

    private static MigrationRunContext Context(MigrationSide side, IReadOnlyList<IVfioMigrationDevice> devices, MigrationOptions? options = null, IProgress<MigrationProgress>? progress = null)
    {
        var options1 = options ?? MigrationOptions.Default;
        return new MigrationRunContext(side, devices, options1, progress, options1.LoggerFactory.CreateLogger(typeof(EngineDeviceTests).FullName!));
    }

    [Fact]
    public async Task SourceDevice_AnAckWithoutAMarker_IsRefused()
    {
        await using var devices = new EngineTestDevices(1, Caps7);
        var run = Context(MigrationSide.Source, devices.Sources);
        var device = new SourceDevice(0, run);
        Assert.False(device.Acknowledge());
        Assert.False(device.InitialDataAcknowledged);
        run.Trace.End();
    }

    [Fact]
    public async Task SourceDevice_AfterReinit_TheAckOfTheOlderMarker_DoesNotCountForTheNewInitialData()
    {
        await using var devices = new EngineTestDevices(1, Caps7);
        var run = Context(MigrationSide.Source, devices.Sources);
        var device = new SourceDevice(0, run);

        device.MarkInitDataSent();
        Assert.False(device.InitialDataAcknowledged);
        Assert.True(device.Reinit()); // takes back the initial data already marked sent
        Assert.True(device.Acknowledge()); // the first marker's ack, arriving late
        Assert.False(device.InitialDataAcknowledged);

        device.MarkInitDataSent();
        Assert.False(device.InitialDataAcknowledged);
        Assert.True(device.Acknowledge());
        Assert.True(device.InitialDataAcknowledged);
        Assert.False(device.Acknowledge()); // a third ack has no marker
        Assert.Equal(1, device.Reinits);
        Assert.Equal(1, device.Statistics().Reinits);
        run.Trace.End();
    }

    [Fact]
    public async Task SourceDevice_Probe_RefusesADeviceWithoutStopCopy_NamingIt()
    {
        await using var devices = new EngineTestDevices(1, Caps7);
        var claims = new FaultyDevice(devices.Sources[0]) { ClaimCapabilities = VfioMigrationFlags.PreCopy };
        var run = Context(MigrationSide.Source, [claims]);
        var ex = await Assert.ThrowsAsync<MigrationException>(() => new SourceDevice(0, run).ProbeAsync(TestContext.Current.CancellationToken));
        Assert.Equal(Errno.EOPNOTSUPP, ex.Errno);
        Assert.Equal(0, ex.DeviceIndex);
        Assert.Equal(MigrationSide.Source, ex.Side);
        Assert.Contains("STOP_COPY", ex.Message, StringComparison.Ordinal);
        run.Trace.End();
    }

    [Fact]
    public async Task SourceDevice_Probe_RefusesADeviceThatDoesNotRun()
    {
        await using var devices = new EngineTestDevices(1, Caps7);
        await devices.Sources[0].SetStateAsync(VfioMigrationState.Stop, TestContext.Current.CancellationToken);
        var run = Context(MigrationSide.Source, devices.Sources);
        var ex = await Assert.ThrowsAsync<MigrationException>(() => new SourceDevice(0, run).ProbeAsync(TestContext.Current.CancellationToken));
        Assert.Equal(Errno.EBUSY, ex.Errno);
        Assert.Contains("STOP", ex.Message, StringComparison.Ordinal);
        run.Trace.End();
    }

    [Fact]
    public async Task SourceDevice_WithoutMigDataSize_MigratesOnPrecopyInfoAlone()
    {
        await using var devices = new EngineTestDevices(1, Caps7);
        var noSize = new FaultyDevice(devices.Sources[0]) { FailStopCopySize = true };
        var run = Context(MigrationSide.Source, [noSize]);
        var device = new SourceDevice(0, run);
        await device.ProbeAsync(TestContext.Current.CancellationToken);
        Assert.Equal(Caps7, device.Caps);
        Assert.False(device.StopCopySizeKnown);
        Assert.Equal(0UL, await device.StopCopySizeNowAsync(TestContext.Current.CancellationToken));
        run.Trace.End();
    }

    [Fact]
    public async Task SourceDevice_WithMigDataSize_ReportsTheDevicesEstimate()
    {
        await using var devices = new EngineTestDevices(1, Caps7, size: 1 << 16);
        var run = Context(MigrationSide.Source, devices.Sources);
        var device = new SourceDevice(0, run);
        await device.ProbeAsync(TestContext.Current.CancellationToken);
        ulong expected = await devices.Sources[0].GetStopCopySizeAsync(TestContext.Current.CancellationToken);
        Assert.True(device.StopCopySizeKnown);
        Assert.Equal(expected, device.StopCopySize);
        Assert.Equal(expected, await device.StopCopySizeNowAsync(TestContext.Current.CancellationToken));
        run.Trace.End();
    }

    [Fact]
    public async Task DestinationDevice_DeviceEnd_MustDeclareTheBytesThatArrived()
    {
        await using var devices = new EngineTestDevices(1, Caps7);
        var run = Context(MigrationSide.Destination, devices.Destinations);
        var device = new DestinationDevice(0, run) { PreCopyBytes = 100, StopCopyBytes = 28 };
        var ex = Assert.Throws<MigrationException>(() => device.End(129));
        Assert.Equal(Errno.EBADMSG, ex.Errno);
        Assert.Equal(0, ex.DeviceIndex);
        Assert.False(device.Ended);
        device.End(128);
        Assert.True(device.Ended);
        run.Trace.End();
    }

    [Fact]
    public async Task DestinationDevice_PreCopiedBySource_NeedsPreCopyHere()
    {
        await using var devices = new EngineTestDevices(1, Caps3);
        var run = Context(MigrationSide.Destination, devices.Destinations);
        var device = new DestinationDevice(0, run) { Setup = new MigrationDeviceSetup(Caps7, 0, MigrationPlanFlags.PreCopy, "src") };
        Assert.True(device.PreCopied);
        var ex = await Assert.ThrowsAsync<MigrationException>(() => device.CheckCapabilitiesAsync(1, TestContext.Current.CancellationToken));
        Assert.Equal(Errno.EOPNOTSUPP, ex.Errno);
        Assert.Contains("PRE_COPY", ex.Message, StringComparison.Ordinal);
        Assert.Equal(Caps3, device.Caps);
        run.Trace.End();
    }

    [Fact]
    public async Task DestinationDevice_SeveralDevices_NeedP2P()
    {
        await using var devices = new EngineTestDevices(2, VfioMigrationFlags.StopCopy);
        var run = Context(MigrationSide.Destination, devices.Destinations);
        var device = new DestinationDevice(1, run) { Setup = new MigrationDeviceSetup(VfioMigrationFlags.StopCopy, 0, 0, "src1") };
        await device.CheckCapabilitiesAsync(1, TestContext.Current.CancellationToken);
        var ex = await Assert.ThrowsAsync<MigrationException>(() => device.CheckCapabilitiesAsync(2, TestContext.Current.CancellationToken));
        Assert.Equal(Errno.EOPNOTSUPP, ex.Errno);
        Assert.Equal(1, ex.DeviceIndex);
        Assert.Contains("P2P", ex.Message, StringComparison.Ordinal);
        run.Trace.End();
    }

    [Fact]
    public async Task RunContext_Progress_MessagesAndForcedAlwaysGo_FiguresAtMostOncePerInterval()
    {
        await using var devices = new EngineTestDevices(1, Caps7);
        var seen = new List<MigrationProgress>();
        var run = Context(MigrationSide.Destination, devices.Destinations, new MigrationOptions { ProgressInterval = TimeSpan.FromHours(1) }, new SynchronousProgress(seen.Add));
        Assert.True(run.ProgressDue(null, force: false)); // the first one
        Assert.False(run.ProgressDue(null, force: false));
        Assert.True(run.ProgressDue("said", force: false));
        Assert.True(run.ProgressDue(null, force: true));
        run.Enter(MigrationPhase.Validate);
        run.Publish(new MigrationProgress { PreCopyBytes = 7 }, "validating");
        var p = Assert.Single(seen);
        Assert.Equal(MigrationSide.Destination, p.Side);
        Assert.Equal(MigrationPhase.Validate, p.Phase);
        Assert.Equal(7, p.PreCopyBytes);
        Assert.Equal("validating", p.Message);
        run.Trace.End();
    }

    [Fact]
    public async Task RunContext_Statistics_SumTheDevices_AndTimeFromSetupAndSwitchover()
    {
        await using var devices = new EngineTestDevices(2, Caps7);
        var run = Context(MigrationSide.Source, devices.Sources);
        var a = new SourceDevice(0, run) { PreCopyBytes = 10, StopCopyBytes = 1 };
        var b = new SourceDevice(1, run) { PreCopyBytes = 20, StopCopyBytes = 2 };
        var before = run.Statistics([a, b]);
        Assert.Equal(TimeSpan.Zero, before.PreCopyTime);
        Assert.Equal(TimeSpan.Zero, run.SinceSwitchover);
        run.SetupDone();
        run.SwitchoverBegins();
        var stats = run.Statistics([a, b]);
        Assert.Equal(30, stats.PreCopyBytes);
        Assert.Equal(3, stats.StopCopyBytes);
        Assert.Equal(2, stats.DeviceCount);
        Assert.Equal([10L, 20L], stats.Devices.Select(d => d.PreCopyBytes));
        Assert.Equal(run.SwitchoverAt!.Value - run.SetupTime, stats.PreCopyTime);
        Assert.True(stats.PreCopyTime >= TimeSpan.Zero);
        run.Trace.End();
    }

    [Fact]
    public void RunContext_DeviceCount_IsCheckedTheSameForBothHalves()
    {
        Assert.Throws<ArgumentException>(() => new MigrationSource([]));
        Assert.Throws<ArgumentException>(() => new MigrationDestination([]));
        Assert.Throws<ArgumentNullException>(() => new MigrationDestination(null!));
    }

    [Fact]
    public void PreCopyMeter_CountsRoundsAndBytes_AndMeasuresOnlyTheTimeInsideRounds()
    {
        var meter = new PreCopyMeter();
        meter.BeginRound();
        meter.EndRound(0);
        Assert.Equal(1, meter.Round);
        Assert.Equal(0, meter.BandwidthBytesPerSecond); // nothing moved: no figure
        meter.BeginRound();
        meter.Update(4096);
        meter.EndRound(1 << 20);
        Assert.Equal(2, meter.Round);
        Assert.Equal(1 << 20, meter.MovedBytes);
        var active = meter.ActiveTime;
        Assert.True(active >= TimeSpan.Zero);
        meter.Update(0); // between rounds the active time stands still
        Assert.Equal(active, meter.ActiveTime);
        if (active > TimeSpan.Zero)
            Assert.Equal((1 << 20) / active.TotalSeconds, meter.BandwidthBytesPerSecond);
    }

    private sealed class SynchronousProgress(Action<MigrationProgress> report) : IProgress<MigrationProgress>
    {
        public void Report(MigrationProgress value) => report(value);
    }
}
