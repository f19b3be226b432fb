using Vfio.TestSupport;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using Vfio.Engine;
using Vfio.Migration;

namespace Vfio.Tests.Engine;

public class MigrationEngineTests
{
    private const VfioMigrationFlags Caps1 = VfioMigrationFlags.StopCopy;
    private const VfioMigrationFlags Caps3 = VfioMigrationFlags.StopCopy | VfioMigrationFlags.P2P;
    private const VfioMigrationFlags Caps5 = VfioMigrationFlags.StopCopy | VfioMigrationFlags.PreCopy;
    private const VfioMigrationFlags Caps7 = VfioMigrationFlags.StopCopy | VfioMigrationFlags.P2P | VfioMigrationFlags.PreCopy;

    [Theory]
    [InlineData(0x1ul)]
    [InlineData(0x3ul)]
    [InlineData(0x5ul)]
    [InlineData(0x7ul)]
    public async Task MigrateAsync_EachCapabilitySet_DestinationMatchesSource(ulong caps)
    {
        await using var devices = new EngineTestDevices(1, (VfioMigrationFlags)caps, dirtyRate: 2 << 20);
        var progress = new RecordingProgress();
        var stats = await MigrationEngine.MigrateAsync(devices.Sources, devices.Destinations, MigrationOptions.Default, progress, TestContext.Current.CancellationToken);

        Assert.Equal(VfioMigrationState.Stop, devices.SourceDevices[0].State);
        Assert.Equal(VfioMigrationState.Running, devices.DestinationDevices[0].State);
        Assert.Equal(devices.SourceDevices[0].ComputeSha256(), devices.DestinationDevices[0].ComputeSha256());
        bool preCopy = ((VfioMigrationFlags)caps & VfioMigrationFlags.PreCopy) != 0;
        Assert.Equal(preCopy, stats.PreCopyUsed);
        Assert.Equal(((VfioMigrationFlags)caps & VfioMigrationFlags.P2P) != 0, stats.P2PUsed);
        Assert.True(stats.Downtime > TimeSpan.Zero);
        Assert.True(stats.TotalTime >= stats.Downtime);
        Assert.True(stats.StopCopyBytes > 0);
        Assert.Equal(preCopy, stats.PreCopyBytes > 0);
        Assert.Equal(preCopy, stats.Devices[0].InitialDataAcknowledged);
        Assert.True(stats.TotalBytes >= 1 << 20);
        Assert.Contains(progress.Items, p => p.Phase == MigrationPhase.Completed);
        Assert.Empty(stats.Warnings);
    }

    [Theory]
    [InlineData(0x3ul)]
    [InlineData(0x7ul)]
    public async Task MigrateAsync_SeveralP2PDevices_AllQuiesceBeforeAnyStops(ulong caps)
    {
        const int n = 3;
        await using var devices = new EngineTestDevices(n, (VfioMigrationFlags)caps, dirtyRate: 1 << 20);
        var log = new List<(bool Source, int Device, MigrationArc Arc)>();
        for (int i = 0; i < n; i++)
        {
            int index = i;
            devices.SourceDevices[i].ArcCommitted += (_, arc) => { lock (log) log.Add((true, index, arc)); };
            devices.DestinationDevices[i].ArcCommitted += (_, arc) => { lock (log) log.Add((false, index, arc)); };
        }

        await MigrationEngine.MigrateAsync(devices.Sources, devices.Destinations, null, null, TestContext.Current.CancellationToken);

        for (int i = 0; i < n; i++)
            Assert.Equal(devices.SourceDevices[i].ComputeSha256(), devices.DestinationDevices[i].ComputeSha256());

        // Source: no device enters STOP or STOP_COPY before every device is in a P2P state.
        var src = log.Where(e => e.Source).ToList();
        int firstStop = src.FindIndex(e => e.Arc.To is VfioMigrationState.Stop or VfioMigrationState.StopCopy);
        Assert.True(firstStop > 0);
        for (int i = 0; i < n; i++)
        {
            int quiesced = src.FindIndex(e => e.Device == i && e.Arc.To is VfioMigrationState.RunningP2P or VfioMigrationState.PreCopyP2P);
            Assert.InRange(quiesced, 0, firstStop - 1);
        }

        // Destination: every device reaches RUNNING_P2P before any reaches RUNNING.
        var dst = log.Where(e => !e.Source).ToList();
        int firstRunning = dst.FindIndex(e => e.Arc.To == VfioMigrationState.Running);
        for (int i = 0; i < n; i++)
        {
            int p2p = dst.FindLastIndex(e => e.Device == i && e.Arc.To == VfioMigrationState.RunningP2P);
            Assert.InRange(p2p, 0, firstRunning - 1);
        }
    }

    [Fact]
    public async Task MigrateAsync_SeveralDevicesWithoutP2P_IsRefusedAndSourcesKeepRunning()
    {
        await using var devices = new EngineTestDevices(2, Caps5);
        var ex = await Assert.ThrowsAsync<MigrationException>(() => MigrationEngine.MigrateAsync(devices.Sources, devices.Destinations, null, null, TestContext.Current.CancellationToken));
        Assert.Equal(Errno.EOPNOTSUPP, ex.Errno);
        Assert.Equal(MigrationPhase.Setup, ex.Phase);
        Assert.Contains("P2P", ex.Message, StringComparison.Ordinal);
        Assert.All(devices.SourceDevices, d => Assert.Equal(VfioMigrationState.Running, d.State));
        Assert.All(devices.DestinationDevices, d => Assert.Equal(VfioMigrationState.Running, d.State));
    }

    [Fact]
    public async Task MigrateAsync_DestinationLacksPreCopy_IsRefused()
    {
        await using var devices = new EngineTestDevices(1, Caps7, destinationCaps: Caps3);
        var ex = await Assert.ThrowsAsync<MigrationException>(() => MigrationEngine.MigrateAsync(devices.Sources, devices.Destinations, null, null, TestContext.Current.CancellationToken));
        Assert.Equal(Errno.EOPNOTSUPP, ex.Errno);
        Assert.Equal(MigrationSide.Destination, ex.Side);
        Assert.Equal(MigrationPhase.Setup, ex.Phase);
        Assert.Contains("PRE_COPY", ex.Message, StringComparison.Ordinal);
        Assert.Equal(VfioMigrationState.Running, devices.SourceDevices[0].State);
    }

    [Fact]
    public async Task MigrateAsync_PreCopyDisabled_MigratesStopCopyOnlyEvenToADestinationWithoutPreCopy()
    {
        await using var devices = new EngineTestDevices(1, Caps7, destinationCaps: Caps3);
        var stats = await MigrationEngine.MigrateAsync(devices.Sources, devices.Destinations, MigrationOptions.Default with { UsePreCopy = false }, null, TestContext.Current.CancellationToken);
        Assert.False(stats.PreCopyUsed);
        Assert.Equal(devices.SourceDevices[0].ComputeSha256(), devices.DestinationDevices[0].ComputeSha256());
    }

    [Fact]
    public async Task MigrateAsync_DifferentDeviceCounts_IsAnArgumentError()
    {
        await using var a = new EngineTestDevices(2, Caps7);
        await Assert.ThrowsAsync<ArgumentException>(() => MigrationEngine.MigrateAsync(a.Sources, a.Destinations.Take(1).ToList(), null, null, TestContext.Current.CancellationToken));
    }

    [Fact]
    public async Task MigrateAsync_SourceNotRunning_IsRefusedWithEbusy()
    {
        await using var devices = new EngineTestDevices(1, Caps7);
        devices.SourceDevices[0].SetState(VfioMigrationState.Stop);
        var ex = await Assert.ThrowsAsync<MigrationException>(() => MigrationEngine.MigrateAsync(devices.Sources, devices.Destinations, null, null, TestContext.Current.CancellationToken));
        Assert.Equal(Errno.EBUSY, ex.Errno);
        Assert.Equal(0, ex.DeviceIndex);
    }

    [Fact]
    public async Task MigrateAsync_IncompatibleDestinationDevice_WithoutTheCompatCheck_FailsInLoadAndLeavesSourceIntact()
    {
        // A destination of another size rejects the sample stream's header (EINVAL from the device's write).
        await using var src = new EngineTestDevices(1, Caps7);
        await using var dst = new EngineTestDevices(1, Caps7, size: 2 << 20);
        var before = src.SourceDevices[0].ComputeSha256();
        var options = MigrationOptions.Default with { CheckCompatibility = false };
        var ex = await Assert.ThrowsAsync<MigrationException>(() => MigrationEngine.MigrateAsync(src.Sources, dst.Destinations, options, null, TestContext.Current.CancellationToken));
        Assert.Equal(MigrationSide.Destination, ex.Side);
        Assert.Equal(Errno.EINVAL, ex.Errno);
        Assert.Equal(0, ex.DeviceIndex);
        Assert.Contains("incompatible device", ex.Message, StringComparison.Ordinal);
        Assert.Equal(VfioMigrationState.Running, src.SourceDevices[0].State);
        Assert.Equal(before, src.SourceDevices[0].ComputeSha256());
        Assert.Equal(VfioMigrationState.Running, dst.DestinationDevices[0].State);
    }

    public enum FaultCase
    {
        SourceCapabilities,
        DestinationResuming,
        SourcePreCopyRead,
        SourceP2PQuiesce,
        SourceStopCopyTransition,
        SourceStopCopyRead,
        DestinationWrite,
        DestinationValidation,
        DestinationRunningP2P,
        DestinationRunning,
    }

    [Theory]
    [InlineData(FaultCase.SourceCapabilities, MigrationSide.Source, MigrationPhase.Setup)]
    [InlineData(FaultCase.DestinationResuming, MigrationSide.Destination, MigrationPhase.Setup)]
    [InlineData(FaultCase.SourcePreCopyRead, MigrationSide.Source, MigrationPhase.PreCopy)]
    [InlineData(FaultCase.SourceP2PQuiesce, MigrationSide.Source, MigrationPhase.Switchover)]
    [InlineData(FaultCase.SourceStopCopyTransition, MigrationSide.Source, MigrationPhase.Switchover)]
    [InlineData(FaultCase.SourceStopCopyRead, MigrationSide.Source, MigrationPhase.StopCopy)]
    [InlineData(FaultCase.DestinationWrite, MigrationSide.Destination, MigrationPhase.PreCopy)]
    [InlineData(FaultCase.DestinationValidation, MigrationSide.Destination, MigrationPhase.Validate)]
    public async Task MigrateAsync_FailureAtEachPoint_SourceRunsUnchangedAndDestinationIsReset(FaultCase fault, MigrationSide side, MigrationPhase phase)
    {
        const int n = 2;
        await using var devices = new EngineTestDevices(n, Caps7);
        // The failing device is the second one, so the first has already moved on when it fails.
        var sources = devices.Sources.ToList();
        var destinations = devices.Destinations.ToList();
        var faulty = fault switch
        {
            FaultCase.SourceCapabilities => new FaultyDevice(sources[1]) { FailCapabilities = true },
            FaultCase.SourcePreCopyRead => new FaultyDevice(sources[1]) { FailReadIn = VfioMigrationState.PreCopy, ReadsBeforeFailure = 1 },
            FaultCase.SourceP2PQuiesce => new FaultyDevice(sources[1]) { FailSetStateTo = VfioMigrationState.PreCopyP2P },
            FaultCase.SourceStopCopyTransition => new FaultyDevice(sources[1]) { FailSetStateTo = VfioMigrationState.StopCopy },
            FaultCase.SourceStopCopyRead => new FaultyDevice(sources[1]) { FailReadIn = VfioMigrationState.StopCopy },
            FaultCase.DestinationResuming => new FaultyDevice(destinations[1]) { FailSetStateTo = VfioMigrationState.Resuming },
            FaultCase.DestinationWrite => new FaultyDevice(destinations[1]) { FailWriteAfter = 0 },
            FaultCase.DestinationValidation => new FaultyDevice(destinations[1]) { FailSetStateTo = VfioMigrationState.Stop },
            FaultCase.DestinationRunningP2P => new FaultyDevice(destinations[1]) { FailSetStateTo = VfioMigrationState.RunningP2P },
            FaultCase.DestinationRunning => new FaultyDevice(destinations[1]) { FailSetStateTo = VfioMigrationState.Running },
            _ => throw new ArgumentOutOfRangeException(nameof(fault)),
        };
        if (side == MigrationSide.Source)
            sources[1] = faulty;
        else
            destinations[1] = faulty;
        // Every destination device is wrapped so resets can be counted.
        var counted = destinations.Select(d => d as FaultyDevice ?? new FaultyDevice(d)).ToList();
        var before = devices.SourceDevices.Select(d => d.ComputeSha256()).ToList();

        var ex = await Assert.ThrowsAsync<MigrationException>(() => MigrationEngine.MigrateAsync(sources, counted.Cast<IVfioMigrationDevice>().ToList(), null, null, TestContext.Current.CancellationToken));

        Assert.Equal(side, ex.Side);
        Assert.Equal(phase, ex.Phase);
        Assert.Equal(Errno.EIO, ex.Errno);
        Assert.Equal(1, ex.DeviceIndex);
        Assert.Contains("injected failure", ex.Message, StringComparison.Ordinal);
        Assert.Empty(ex.RecoveryErrors);
        for (int i = 0; i < n; i++)
        {
            Assert.Equal(VfioMigrationState.Running, devices.SourceDevices[i].State);
            Assert.Equal(before[i], devices.SourceDevices[i].ComputeSha256());
            Assert.Equal(VfioMigrationState.Running, devices.DestinationDevices[i].State);
            Assert.Null(devices.DestinationDevices[i].CurrentSession);
        }
        // Once a destination device was touched (RESUMING), the failure resets it.
        if (fault is not FaultCase.SourceCapabilities)
            Assert.True(counted[0].Resets >= 1, "destination device 0 was not reset");
    }

    [Fact]
    public async Task MigrateAsync_Canceled_SourceRunsUnchangedAndDestinationIsReset()
    {
        await using var devices = new EngineTestDevices(1, Caps7, size: 4 << 20, dirtyRate: 64 << 20);
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
        var progress = new RecordingProgress(p =>
        {
            if (p.Phase == MigrationPhase.PreCopy && p.Round >= 2)
                cts.Cancel();
        });
        // Never converges (zero downtime), so only the cancellation can end it.
        var options = MigrationOptions.Default with { DowntimeLimit = TimeSpan.Zero, MaxRounds = 100_000 };
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => MigrationEngine.MigrateAsync(devices.Sources, devices.Destinations, options, progress, cts.Token));

        Assert.Equal(VfioMigrationState.Running, devices.SourceDevices[0].State);
        Assert.Null(devices.SourceDevices[0].CurrentSession);
        Assert.Equal(VfioMigrationState.Running, devices.DestinationDevices[0].State);
        Assert.Null(devices.DestinationDevices[0].CurrentSession);
    }

    [Fact]
    public async Task MigrateAsync_NotConverging_FailsWithAReportAndSourceKeepsRunning()
    {
        await using var devices = new EngineTestDevices(1, Caps7, size: 4 << 20, dirtyRate: 64 << 20);
        var options = MigrationOptions.Default with { DowntimeLimit = TimeSpan.Zero, MaxRounds = 3 };
        var ex = await Assert.ThrowsAsync<MigrationException>(() => MigrationEngine.MigrateAsync(devices.Sources, devices.Destinations, options, null, TestContext.Current.CancellationToken));

        Assert.Equal(Errno.ETIMEDOUT, ex.Errno);
        Assert.Equal(MigrationPhase.PreCopy, ex.Phase);
        Assert.NotNull(ex.Convergence);
        Assert.Equal(3, ex.Convergence.Rounds);
        Assert.True(ex.Convergence.PendingBytes > ex.Convergence.ThresholdBytes);
        Assert.Contains("did not converge", ex.Message, StringComparison.Ordinal);
        Assert.Equal(VfioMigrationState.Running, devices.SourceDevices[0].State);
        Assert.Equal(VfioMigrationState.Running, devices.DestinationDevices[0].State);
        Assert.NotNull(ex.Statistics);
        Assert.Equal(3, ex.Statistics.Rounds);
    }

    [Fact]
    public async Task MigrateAsync_NotConvergingWithForcedSwitchover_CompletesAndSaysSo()
    {
        await using var devices = new EngineTestDevices(1, Caps7, size: 4 << 20, dirtyRate: 64 << 20);
        var options = MigrationOptions.Default with { DowntimeLimit = TimeSpan.Zero, MaxRounds = 3, NonConvergence = NonConvergencePolicy.ForceSwitchover };
        var stats = await MigrationEngine.MigrateAsync(devices.Sources, devices.Destinations, options, null, TestContext.Current.CancellationToken);

        Assert.True(stats.ForcedSwitchover);
        Assert.Equal(3, stats.Rounds);
        Assert.Equal(devices.SourceDevices[0].ComputeSha256(), devices.DestinationDevices[0].ComputeSha256());
    }

    [Fact]
    public async Task SourceAndDestination_OverATcpConnection_Migrate()
    {
        await using var devices = new EngineTestDevices(2, Caps7, dirtyRate: 1 << 20);
        var ct = TestContext.Current.CancellationToken;
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        using var client = new TcpClient();
        await client.ConnectAsync((IPEndPoint)listener.LocalEndpoint, ct);
        using var server = await listener.AcceptTcpClientAsync(ct);
        await using var sourceStream = client.GetStream();
        await using var destinationStream = server.GetStream();

        var destination = Task.Run(() => new MigrationDestination(devices.Destinations).RunAsync(destinationStream, destinationStream, null, ct), ct);
        var stats = await new MigrationSource(devices.Sources).RunAsync(sourceStream, sourceStream, null, ct);
        var destinationStats = await destination;

        Assert.Equal(stats.TotalBytes, destinationStats.TotalBytes);
        for (int i = 0; i < 2; i++)
            Assert.Equal(devices.SourceDevices[i].ComputeSha256(), devices.DestinationDevices[i].ComputeSha256());
    }

    [Fact]
    public async Task Destination_FedAnotherStreamKind_FailsWithEprotoAndTouchesNothing()
    {
        await using var devices = new EngineTestDevices(1, Caps7);
        var input = new Pipe();
        var back = new Pipe();
        // A return-stream preamble where a forward stream is expected.
        var bogus = new Vfio.Stream.MigrationStreamWriter(input.Writer, Vfio.Stream.MigrationStreamKind.Return, 1);
        await bogus.WritePreambleAsync(TestContext.Current.CancellationToken);
        await input.Writer.CompleteAsync();

        var ex = await Assert.ThrowsAsync<MigrationException>(() => new MigrationDestination(devices.Destinations).RunAsync(input.Reader, back.Writer, null, TestContext.Current.CancellationToken));
        Assert.Equal(Errno.EPROTO, ex.Errno);
        Assert.Equal(VfioMigrationState.Running, devices.DestinationDevices[0].State);
    }

    [Fact]
    public async Task MigrateAsync_SourceRefusesStopAfterSuccess_IsAWarningNotAFailure()
    {
        await using var devices = new EngineTestDevices(1, Caps7);
        var source = new FaultyDevice(devices.Sources[0]) { FailSetStateTo = VfioMigrationState.Stop };
        var stats = await MigrationEngine.MigrateAsync([source], devices.Destinations, null, null, TestContext.Current.CancellationToken);

        var warning = Assert.Single(stats.Warnings);
        Assert.Contains("STOP_COPY>STOP", warning, StringComparison.Ordinal);
        Assert.Equal(VfioMigrationState.Running, devices.DestinationDevices[0].State);
        Assert.Equal(devices.SourceDevices[0].ComputeSha256(), devices.DestinationDevices[0].ComputeSha256());
        // The destination runs the workload now: the source is left stopped (STOP_COPY), never restarted.
        Assert.Equal(VfioMigrationState.StopCopy, devices.SourceDevices[0].State);
    }

    [Fact]
    public async Task MigrateAsync_StopCopyOnlyWithSeveralDevices_AllQuiesceThroughRunningP2P()
    {
        await using var devices = new EngineTestDevices(2, Caps3, dirtyRate: 1 << 20);
        var stats = await MigrationEngine.MigrateAsync(devices.Sources, devices.Destinations, null, null, TestContext.Current.CancellationToken);
        Assert.False(stats.PreCopyUsed);
        Assert.True(stats.P2PUsed);
        Assert.Equal(0, stats.PreCopyBytes);
        Assert.All(stats.Devices, d => Assert.False(d.InitialDataAcknowledged));
    }

    [Fact]
    public async Task PreCopy_DeviceReportsReinit_InitialDataIsAcknowledgedAgainBeforeSwitchover()
    {
        await using var devices = new EngineTestDevices(1, Caps7);
        var source = new FaultyDevice(devices.Sources[0]) { ReinitOnce = true };
        var (bytes, stats) = await StreamCapture.MigrateAsync([source], devices.Destinations);

        var frames = await StreamCapture.DecodeAsync(bytes);
        Assert.Equal(2, frames.Count(f => f.Type == Vfio.Stream.MigrationFrameType.InitDataSent));
        int switchover = frames.FindIndex(f => f.Type == Vfio.Stream.MigrationFrameType.Switchover);
        Assert.True(frames.FindLastIndex(f => f.Type == Vfio.Stream.MigrationFrameType.InitDataSent) < switchover);
        Assert.True(stats.Devices[0].InitialDataAcknowledged);
        Assert.Equal(devices.SourceDevices[0].ComputeSha256(), devices.DestinationDevices[0].ComputeSha256());
    }

    [Fact]
    public async Task ForwardStream_HasTheDocumentedFrameOrder()
    {
        await using var devices = new EngineTestDevices(2, Caps7, dirtyRate: 1 << 20);
        var (bytes, stats) = await StreamCapture.MigrateAsync(devices.Sources, devices.Destinations);
        var frames = await StreamCapture.DecodeAsync(bytes);
        Assert.Equal(stats.StreamBytes, bytes.Length);
        Assert.Equal(
            [(Vfio.Stream.MigrationFrameType.Begin, (ushort)0xFFFF), (Vfio.Stream.MigrationFrameType.Setup, (ushort)0), (Vfio.Stream.MigrationFrameType.Profile, (ushort)0),
                (Vfio.Stream.MigrationFrameType.Setup, (ushort)1), (Vfio.Stream.MigrationFrameType.Profile, (ushort)1)],
            frames.Take(5).Select(f => (f.Type, f.Device)));
        Assert.Equal(Vfio.Stream.MigrationFrameCodec.MigrationIdSize, frames[0].Length);
        Assert.NotEqual(Guid.Empty, stats.MigrationId);
        Assert.Equal(Vfio.Stream.MigrationFrameType.End, frames[^2].Type);
        Assert.Equal(Vfio.Stream.MigrationFrameType.Commit, frames[^1].Type);
        int switchover = frames.FindIndex(f => f.Type == Vfio.Stream.MigrationFrameType.Switchover);
        Assert.All(frames.Take(switchover), f => Assert.NotEqual(Vfio.Stream.MigrationFrameType.StopCopyData, f.Type));
        Assert.All(frames.Skip(switchover), f => Assert.NotEqual(Vfio.Stream.MigrationFrameType.PreCopyData, f.Type));
        Assert.All(frames, f => Assert.True(f.Length <= MigrationOptions.Default.BufferBytes));
        Assert.Equal(stats.TotalBytes, frames.Where(f => f.Type is Vfio.Stream.MigrationFrameType.PreCopyData or Vfio.Stream.MigrationFrameType.StopCopyData).Sum(f => (long)f.Length));
    }

    [Fact]
    public async Task Source_DestinationVanishesAfterSetup_FailsAndKeepsRunning()
    {
        await using var devices = new EngineTestDevices(1, Caps7);
        var ct = TestContext.Current.CancellationToken;
        var forward = new Pipe();
        var back = new Pipe();
        var before = devices.SourceDevices[0].ComputeSha256();
        // A peer that answers Ready and then disappears without a word.
        var peer = Task.Run(async () =>
        {
            var reader = new Vfio.Stream.MigrationStreamReader(forward.Reader, Vfio.Stream.MigrationStreamKind.Forward);
            await reader.ReadPreambleAsync(ct);
            await reader.ReadFrameAsync(ct);
            var writer = new Vfio.Stream.MigrationStreamWriter(back.Writer, Vfio.Stream.MigrationStreamKind.Return, 1, 4096);
            await writer.WritePreambleAsync(ct);
            await writer.WriteUInt64Async(Vfio.Stream.MigrationFrameType.Ready, 0, (ulong)Caps7, ct);
            await reader.ReadFrameAsync(ct);
            await forward.Reader.CompleteAsync();
            await back.Writer.CompleteAsync();
        }, ct);

        var ex = await Assert.ThrowsAsync<MigrationException>(() => new MigrationSource(devices.Sources).RunAsync(forward.Writer, back.Reader, null, ct));
        await peer;
        Assert.True(ex.Errno is Errno.EPIPE, ex.Message);
        Assert.Equal(VfioMigrationState.Running, devices.SourceDevices[0].State);
        Assert.Null(devices.SourceDevices[0].CurrentSession);
        Assert.Equal(before, devices.SourceDevices[0].ComputeSha256());
    }

    [Fact]
    public async Task Source_CanceledAfterEverythingWasSent_FinishesWhenTheDestinationStartedAnyway()
    {
        await using var devices = new EngineTestDevices(1, Caps7);
        var ct = TestContext.Current.CancellationToken;
        var forward = new Pipe();
        var back = new Pipe();
        using var sourceCts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var progress = new RecordingProgress(p =>
        {
            if (p.Phase == MigrationPhase.Start)
                sourceCts.Cancel();
        });
        var slowStart = new FaultyDevice(devices.Destinations[0]) { DelaySetStateTo = VfioMigrationState.Running, Delay = TimeSpan.FromMilliseconds(300) };
        var destination = Task.Run(() => new MigrationDestination([slowStart]).RunAsync(forward.Reader, back.Writer, null, ct), ct);

        var stats = await new MigrationSource(devices.Sources).RunAsync(forward.Writer, back.Reader, progress, sourceCts.Token);
        await destination;

        // The destination runs the workload: the source must not restart (that would run it twice).
        Assert.Contains(stats.Warnings, w => w.Contains("completed although", StringComparison.Ordinal));
        Assert.Equal(VfioMigrationState.Stop, devices.SourceDevices[0].State);
        Assert.Equal(VfioMigrationState.Running, devices.DestinationDevices[0].State);
        Assert.Equal(devices.SourceDevices[0].ComputeSha256(), devices.DestinationDevices[0].ComputeSha256());
    }

    [Fact]
    public async Task MigrateAsync_WithALoggerFactory_LogsStartSwitchoverAndCompletion()
    {
        await using var devices = new EngineTestDevices(1, Caps7);
        using var logs = new RecordingLoggerFactory();
        await MigrationEngine.MigrateAsync(devices.Sources, devices.Destinations, MigrationOptions.Default with { LoggerFactory = logs }, null, TestContext.Current.CancellationToken);
        var ids = logs.Entries.Select(e => e.EventId).ToHashSet();
        Assert.Contains(100, ids);
        Assert.Contains(102, ids);
        Assert.Contains(103, ids);
        Assert.Contains(104, ids);
        Assert.Contains(logs.Entries, e => e.EventId == 104 && e.Message.Contains("downtime", StringComparison.Ordinal));
    }

    private sealed class RecordingProgress(Action<MigrationProgress>? onReport = null) : IProgress<MigrationProgress>
    {
        public List<MigrationProgress> Items { get; } = [];

        public void Report(MigrationProgress value)
        {
            lock (Items)
                Items.Add(value);
            onReport?.Invoke(value);
        }
    }
}
