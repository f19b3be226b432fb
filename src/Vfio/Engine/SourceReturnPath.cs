using System.IO.Pipelines;
using Vfio.Migration;
using Vfio.Stream;

namespace Vfio.Engine;

/// <summary>
/// The source's reading of the destination's return path, on its own task: Ready (with the destination's
/// capabilities), the switchover-acks, LoadResult, Committed, Complete and Error. What it reads completes the
/// tasks the source's main loop waits on; a failure it reads (or the return path breaking) faults them and
/// cancels the main loop. It reads until the end, even after the caller cancels: a Complete already on its way
/// decides whether the sources may restart.
/// </summary>
internal sealed class SourceReturnPath
{
    private readonly MigrationRunContext _run;
    private readonly PipeReader _pipe;
    private readonly IReadOnlyList<SourceDevice> _devices;
    private readonly TaskCompletionSource _ready = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _loaded = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource<ulong> _complete = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private CancellationTokenSource? _mainLoop;
    private MigrationException? _remoteFailure;
    private MigrationException? _brokenFailure;
    private bool _preCopy;
    private bool _commitSent;
    private bool _committedSeen;
    private bool _completeSeen;
    private int _readyCount;
    private int _loadedCount;

    public SourceReturnPath(MigrationRunContext run, PipeReader pipe, IReadOnlyList<SourceDevice> devices)
    {
        _run = run;
        _pipe = pipe;
        _devices = devices;
    }

    /// <summary>Every destination device reported Ready.</summary>
    public Task Ready => _ready.Task;

    /// <summary>Every destination device reported itself loaded and validated.</summary>
    public Task Loaded => _loaded.Task;

    /// <summary>The destination reported its devices running; the result is its start time in microseconds.</summary>
    public Task<ulong> Complete => _complete.Task;

    /// <summary>The point of no return: from here the sources never restart by themselves.</summary>
    public bool CommitSent => Volatile.Read(ref _commitSent);

    /// <summary>The destination recorded the commit (Committed or Complete arrived).</summary>
    public bool CommitRecorded => Volatile.Read(ref _completeSeen) || Volatile.Read(ref _committedSeen);

    public bool CompleteSeen => Volatile.Read(ref _completeSeen);

    /// <summary>A failure the destination reported (Error, or a failed LoadResult).</summary>
    public MigrationException? RemoteFailure => Volatile.Read(ref _remoteFailure);

    /// <summary>The return path itself broke (transport or protocol).</summary>
    public MigrationException? BrokenFailure => Volatile.Read(ref _brokenFailure);

    /// <summary>Marks the Commit as about to be written, even in part.</summary>
    public void MarkCommitSent() => Volatile.Write(ref _commitSent, true);

    /// <summary>
    /// Starts reading. <paramref name="preCopy"/> says whether acks may come; <paramref name="mainLoop"/> is canceled
    /// on the first failure (until <see cref="Detach"/>).
    /// </summary>
    public Task StartAsync(bool preCopy, CancellationTokenSource mainLoop, CancellationToken token)
    {
        _preCopy = preCopy;
        _mainLoop = mainLoop;
        return Task.Run(() => ReadAsync(token), CancellationToken.None);
    }

    /// <summary>The main loop's token source is about to be disposed.</summary>
    public void Detach() => _mainLoop = null;

    private async Task ReadAsync(CancellationToken token)
    {
        var reader = new MigrationStreamReader(_pipe, MigrationStreamKind.Return, MigrationFrameCodec.HardMaxPayload) { OnFrame = (t, d, n) => _run.Trace.Frame(false, t, d, n) };
        try
        {
            var preamble = await reader.ReadPreambleAsync(token).ConfigureAwait(false);
            if (preamble.DeviceCount != _devices.Count)
                throw new VfioException(Errno.EPROTO, "read return path", $"the destination answers for {preamble.DeviceCount} devices, the source migrates {_devices.Count}");
            while (await reader.ReadFrameAsync(token).ConfigureAwait(false) is { } frame)
            {
                EngineLog.ReturnFrame(_run.Log, frame.Type, frame.Device, frame.Length);
                if (!Handle(frame))
                    return;
            }
            if (!_complete.Task.IsCompleted)
                throw new VfioException(Errno.EPIPE, "read return path", "the destination closed the return path before reporting success");
        }
        catch (OperationCanceledException) when (token.IsCancellationRequested)
        {
            _ready.TrySetCanceled(token);
            _loaded.TrySetCanceled(token);
            _complete.TrySetCanceled(token);
        }
        catch (VfioException ex)
        {
            SetFailure(new MigrationException(MigrationSide.Destination, _run.Phase, -1, null, ex.Errno, "return path: " + (ex.Detail ?? ex.Message), ex), reported: false);
        }
        catch (Exception ex) when (ex is IOException or ObjectDisposedException or InvalidOperationException or OperationCanceledException)
        {
            SetFailure(new MigrationException(MigrationSide.Destination, _run.Phase, -1, null, Errno.EIO, "return path: " + ex.Message, ex), reported: false);
        }
    }

    // One frame; false when it ends the reading (an Error).
    private bool Handle(MigrationFrame frame)
    {
        int d = frame.Device;
        switch (frame.Type)
        {
            case MigrationFrameType.Ready:
                _devices[d].DestinationCaps = (VfioMigrationFlags)MigrationFrameCodec.ReadUInt64(frame.Payload);
                if (++_readyCount == _devices.Count)
                    _ready.TrySetResult();
                break;
            case MigrationFrameType.InitDataAck:
                if (!_preCopy)
                    throw new VfioException(Errno.EPROTO, "read return path", $"switchover-ack for device {d}, but nothing is pre-copied");
                if (!_devices[d].Acknowledge())
                    throw new VfioException(Errno.EPROTO, "read return path", $"switchover-ack for device {d} without an init-data-sent marker");
                break;
            case MigrationFrameType.LoadResult:
                var load = MigrationFrameCodec.ReadStatus(frame.Payload);
                if (!load.IsSuccess)
                    SetFailure(new MigrationException(MigrationSide.Destination, (MigrationPhase)load.Phase, d, null, load.Errno, load.Message), reported: true);
                else if (++_loadedCount == _devices.Count)
                    _loaded.TrySetResult();
                break;
            case MigrationFrameType.Committed:
                if (!CommitSent)
                    throw new VfioException(Errno.EPROTO, "read return path", "the destination reports a commit that was never sent");
                Volatile.Write(ref _committedSeen, true);
                break;
            case MigrationFrameType.Complete:
                if (!CommitSent)
                    throw new VfioException(Errno.EPROTO, "read return path", "the destination reports its devices running before the source committed");
                Volatile.Write(ref _completeSeen, true);
                _complete.TrySetResult(MigrationFrameCodec.ReadUInt64(frame.Payload));
                break;
            case MigrationFrameType.Error:
                var error = MigrationFrameCodec.ReadStatus(frame.Payload);
                SetFailure(new MigrationException(MigrationSide.Destination, (MigrationPhase)error.Phase, frame.IsStreamLevel ? -1 : d, null, error.Errno, error.Message), reported: true);
                return false;
        }
        return true;
    }

    private void SetFailure(MigrationException failure, bool reported)
    {
        ref MigrationException? slot = ref reported ? ref _remoteFailure : ref _brokenFailure;
        if (Interlocked.CompareExchange(ref slot, failure, null) is not null)
            return;
        _ready.TrySetException(failure);
        _loaded.TrySetException(failure);
        _complete.TrySetException(failure);
        try
        {
            _mainLoop?.Cancel();
        }
        catch (ObjectDisposedException)
        {
        }
    }
}
