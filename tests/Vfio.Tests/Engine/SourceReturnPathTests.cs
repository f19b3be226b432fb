using System.IO.Pipelines;
using Microsoft.Extensions.Logging;
using Vfio.Engine;
using Vfio.Migration;
using Vfio.Stream;

namespace Vfio.Tests.Engine;

/// <summary>The source's return-path loop against return streams written frame by frame (docs/stream-format.md, docs/commit-protocol.md).</summary>
public class SourceReturnPathTests
{
    private const VfioMigrationFlags Caps7 = VfioMigrationFlags.StopCopy | VfioMigrationFlags.P2P | VfioMigrationFlags.PreCopy;
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(20);

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task ReadyFromEveryDevice_CompletesReady_AndRecordsTheDestinationCaps()
    {
        await using var rig = await Rig.StartAsync(2, preCopy: true);
        await rig.Writer.WriteUInt64Async(MigrationFrameType.Ready, 0, (ulong)Caps7, Ct);
        Assert.False(rig.ReturnPath.Ready.IsCompleted);
        await rig.Writer.WriteUInt64Async(MigrationFrameType.Ready, 1, (ulong)VfioMigrationFlags.StopCopy, Ct);
        await rig.ReturnPath.Ready.WaitAsync(Deadline, Ct);
        Assert.Equal(Caps7, rig.Devices[0].DestinationCaps);
        Assert.Equal(VfioMigrationFlags.StopCopy, rig.Devices[1].DestinationCaps);
        Assert.False(rig.MainLoop.IsCancellationRequested);
    }

    [Fact]
    public async Task AnAckForTheLatestMarker_MakesTheDeviceAcknowledged()
    {
        await using var rig = await Rig.StartAsync(1, preCopy: true);
        rig.Devices[0].MarkInitDataSent();
        await rig.Writer.WriteFrameAsync(MigrationFrameType.InitDataAck, 0, default, Ct);
        await rig.Writer.WriteUInt64Async(MigrationFrameType.Ready, 0, (ulong)Caps7, Ct); // frames are read in order
        await rig.ReturnPath.Ready.WaitAsync(Deadline, Ct);
        Assert.True(rig.Devices[0].InitialDataAcknowledged);
    }

    [Fact]
    public async Task AnAckWithoutAMarker_BreaksTheReturnPath_AndCancelsTheMainLoop()
    {
        await using var rig = await Rig.StartAsync(1, preCopy: true);
        await rig.Writer.WriteFrameAsync(MigrationFrameType.InitDataAck, 0, default, Ct);
        await rig.Loop.WaitAsync(Deadline, Ct);
        var broken = Assert.IsType<MigrationException>(rig.ReturnPath.BrokenFailure);
        Assert.Equal(Errno.EPROTO, broken.Errno);
        Assert.Equal(MigrationSide.Destination, broken.Side);
        Assert.Contains("without an init-data-sent marker", broken.Message, StringComparison.Ordinal);
        Assert.Null(rig.ReturnPath.RemoteFailure);
        Assert.True(rig.MainLoop.IsCancellationRequested);
        await Assert.ThrowsAsync<MigrationException>(() => rig.ReturnPath.Ready);
    }

    [Fact]
    public async Task AnAck_WithoutPreCopy_IsAProtocolError()
    {
        await using var rig = await Rig.StartAsync(1, preCopy: false);
        await rig.Writer.WriteFrameAsync(MigrationFrameType.InitDataAck, 0, default, Ct);
        await rig.Loop.WaitAsync(Deadline, Ct);
        Assert.Equal(Errno.EPROTO, rig.ReturnPath.BrokenFailure?.Errno);
        Assert.Contains("nothing is pre-copied", rig.ReturnPath.BrokenFailure!.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Complete_BeforeTheCommitWasSent_IsAProtocolError_NotSuccess()
    {
        await using var rig = await Rig.StartAsync(1, preCopy: false);
        await rig.Writer.WriteUInt64Async(MigrationFrameType.Complete, MigrationFrame.StreamLevel, 5, Ct);
        await rig.Loop.WaitAsync(Deadline, Ct);
        Assert.False(rig.ReturnPath.CompleteSeen);
        Assert.False(rig.ReturnPath.CommitRecorded);
        Assert.Equal(Errno.EPROTO, rig.ReturnPath.BrokenFailure?.Errno);
        await Assert.ThrowsAsync<MigrationException>(() => rig.ReturnPath.Complete);
    }

    [Fact]
    public async Task Complete_AfterTheCommit_CarriesTheDestinationsStartTime()
    {
        await using var rig = await Rig.StartAsync(1, preCopy: false);
        rig.ReturnPath.MarkCommitSent();
        await rig.Writer.WriteFrameAsync(MigrationFrameType.Committed, MigrationFrame.StreamLevel, default, Ct);
        await rig.Writer.WriteUInt64Async(MigrationFrameType.Complete, MigrationFrame.StreamLevel, 1234, Ct);
        Assert.Equal(1234UL, await rig.ReturnPath.Complete.WaitAsync(Deadline, Ct));
        Assert.True(rig.ReturnPath.CommitRecorded);
        Assert.True(rig.ReturnPath.CompleteSeen);
        Assert.Null(rig.ReturnPath.BrokenFailure);
    }

    [Fact]
    public async Task AnErrorFrame_IsTheDestinationsReportedFailure_NamingItsDevice()
    {
        await using var rig = await Rig.StartAsync(2, preCopy: false);
        await rig.Writer.WriteStatusAsync(MigrationFrameType.Error, 1, new MigrationStatus(Errno.ENOSPC, (byte)MigrationPhase.StopCopy, "no room"), Ct);
        await rig.Loop.WaitAsync(Deadline, Ct);
        var remote = Assert.IsType<MigrationException>(rig.ReturnPath.RemoteFailure);
        Assert.Equal(Errno.ENOSPC, remote.Errno);
        Assert.Equal(1, remote.DeviceIndex);
        Assert.Equal(MigrationPhase.StopCopy, remote.Phase);
        Assert.Equal(MigrationSide.Destination, remote.Side);
        Assert.Null(rig.ReturnPath.BrokenFailure);
        Assert.True(rig.MainLoop.IsCancellationRequested);
    }

    [Fact]
    public async Task TheReturnPathEndingBeforeSuccess_IsEpipe()
    {
        await using var rig = await Rig.StartAsync(1, preCopy: false);
        await rig.Pipe.Writer.CompleteAsync();
        await rig.Loop.WaitAsync(Deadline, Ct);
        Assert.Equal(Errno.EPIPE, rig.ReturnPath.BrokenFailure?.Errno);
    }

    [Fact]
    public async Task APreambleForAnotherDeviceCount_IsRefused()
    {
        await using var rig = await Rig.StartAsync(2, preCopy: false, answerFor: 1);
        await rig.Loop.WaitAsync(Deadline, Ct);
        Assert.Equal(Errno.EPROTO, rig.ReturnPath.BrokenFailure?.Errno);
        Assert.Contains("answers for 1 devices", rig.ReturnPath.BrokenFailure!.Message, StringComparison.Ordinal);
    }

    // A source run's context and devices, the return-path loop reading a pipe, and the destination's writer on it.
    private sealed class Rig : IAsyncDisposable
    {
        private readonly EngineTestDevices _devices;
        private readonly MigrationRunContext _run;
        private readonly CancellationTokenSource _stop = new();

        private Rig(int count)
        {
            _devices = new EngineTestDevices(count, Caps7);
            var options = MigrationOptions.Default;
            _run = new MigrationRunContext(MigrationSide.Source, _devices.Sources, options, null, options.LoggerFactory.CreateLogger(typeof(SourceReturnPathTests).FullName!));
            Devices = [.. Enumerable.Range(0, count).Select(i => new SourceDevice(i, _run))];
            ReturnPath = new SourceReturnPath(_run, Pipe.Reader, Devices);
        }

        public Pipe Pipe { get; } = new();

        public SourceDevice[] Devices { get; }

        public SourceReturnPath ReturnPath { get; }

        public CancellationTokenSource MainLoop { get; } = new();

        public MigrationStreamWriter Writer { get; private set; } = null!;

        public Task Loop { get; private set; } = Task.CompletedTask;

        public static async Task<Rig> StartAsync(int count, bool preCopy, int? answerFor = null)
        {
            var rig = new Rig(count);
            rig.Writer = new MigrationStreamWriter(rig.Pipe.Writer, MigrationStreamKind.Return, (ushort)(answerFor ?? count), 4096);
            rig.Loop = rig.ReturnPath.StartAsync(preCopy, rig.MainLoop, rig._stop.Token);
            await rig.Writer.WritePreambleAsync(Ct);
            return rig;
        }

        public async ValueTask DisposeAsync()
        {
            await _stop.CancelAsync();
            await Loop.WaitAsync(Deadline);
            ReturnPath.Detach();
            _run.Trace.End();
            await _devices.DisposeAsync();
            _stop.Dispose();
            MainLoop.Dispose();
        }
    }
}
