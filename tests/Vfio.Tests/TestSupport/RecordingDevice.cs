using Vfio.Device;
using Vfio.Migration;

namespace Vfio.Tests.TestSupport;

/// <summary>
/// A minimal <see cref="MigrationDevice"/> for engine tests: records every arc hook call, can fail a
/// chosen arc (optionally asking for ERROR), can block inside a hook on a gate, detects overlapping
/// hook calls, and serves a configurable number of saving bytes.
/// </summary>
internal sealed class RecordingDevice : MigrationDevice
{
    private readonly Lock _log = new();
    private readonly List<MigrationArc> _arcs = [];
    private int _inHook;
    private long _savingAvailable;
    private long _resumed;

    public RecordingDevice(VfioMigrationFlags caps)
        : base(caps)
    {
    }

    /// <summary>Arcs whose hook ran to completion, in order.</summary>
    public IReadOnlyList<MigrationArc> Arcs
    {
        get
        {
            lock (_log)
                return [.. _arcs];
        }
    }

    /// <summary>Set when two hooks ever ran at the same time.</summary>
    public bool OverlapSeen { get; private set; }

    /// <summary>Fail this arc's hook with <see cref="FailErrno"/>.</summary>
    public Func<MigrationArc, bool>? FailWhen { get; set; }

    /// <summary>The errno a failing hook throws.</summary>
    public Errno FailErrno { get; set; } = Errno.EIO;

    /// <summary>A failing hook throws a plain InvalidOperationException instead of a VfioException.</summary>
    public bool FailWithPlainException { get; set; }

    /// <summary>A failing hook calls RequestErrorState first.</summary>
    public bool FailToError { get; set; }

    /// <summary>Called inside every hook (after overlap detection, before recording).</summary>
    public Action<MigrationArc>? InsideHook { get; set; }

    /// <summary>Bytes the next reads of the saving stream may return.</summary>
    public long SavingAvailable
    {
        get => Interlocked.Read(ref _savingAvailable);
        set => Interlocked.Exchange(ref _savingAvailable, value);
    }

    /// <summary>Bytes written to resuming streams so far.</summary>
    public long Resumed => Interlocked.Read(ref _resumed);

    public int ResetCount { get; private set; }

    public List<DataSessionKind> EndedSessions { get; } = [];

    public PrecopyEstimate Estimate { get; set; } = new(100, 0);

    public ulong StopCopySize { get; set; } = 4242;

    public void ClearArcs()
    {
        lock (_log)
            _arcs.Clear();
    }

    private void Hook(VfioMigrationState from, VfioMigrationState to)
    {
        var arc = new MigrationArc(from, to);
        if (Interlocked.Increment(ref _inHook) != 1)
            OverlapSeen = true;
        try
        {
            InsideHook?.Invoke(arc);
            if (FailWhen?.Invoke(arc) == true)
            {
                if (FailToError)
                    RequestErrorState();
                if (FailWithPlainException)
                    throw new InvalidOperationException("injected plain failure");
                throw new VfioException(FailErrno, $"arc {arc}", "injected failure");
            }
            lock (_log)
                _arcs.Add(arc);
        }
        finally
        {
            Interlocked.Decrement(ref _inHook);
        }
    }

    protected override void OnRunningToRunningP2P() => Hook(VfioMigrationState.Running, VfioMigrationState.RunningP2P);
    protected override void OnRunningP2PToRunning() => Hook(VfioMigrationState.RunningP2P, VfioMigrationState.Running);
    protected override void OnRunningP2PToStop() => Hook(VfioMigrationState.RunningP2P, VfioMigrationState.Stop);
    protected override void OnStopToRunningP2P() => Hook(VfioMigrationState.Stop, VfioMigrationState.RunningP2P);
    protected override void OnRunningToStop() => Hook(VfioMigrationState.Running, VfioMigrationState.Stop);
    protected override void OnStopToRunning() => Hook(VfioMigrationState.Stop, VfioMigrationState.Running);
    protected override void OnStopToStopCopy() => Hook(VfioMigrationState.Stop, VfioMigrationState.StopCopy);
    protected override void OnStopCopyToStop() => Hook(VfioMigrationState.StopCopy, VfioMigrationState.Stop);
    protected override void OnStopToResuming() => Hook(VfioMigrationState.Stop, VfioMigrationState.Resuming);
    protected override void OnResumingToStop() => Hook(VfioMigrationState.Resuming, VfioMigrationState.Stop);
    protected override void OnRunningToPreCopy() => Hook(VfioMigrationState.Running, VfioMigrationState.PreCopy);
    protected override void OnPreCopyToRunning() => Hook(VfioMigrationState.PreCopy, VfioMigrationState.Running);
    protected override void OnPreCopyToStopCopy() => Hook(VfioMigrationState.PreCopy, VfioMigrationState.StopCopy);
    protected override void OnPreCopyToPreCopyP2P() => Hook(VfioMigrationState.PreCopy, VfioMigrationState.PreCopyP2P);
    protected override void OnPreCopyP2PToPreCopy() => Hook(VfioMigrationState.PreCopyP2P, VfioMigrationState.PreCopy);
    protected override void OnPreCopyP2PToRunningP2P() => Hook(VfioMigrationState.PreCopyP2P, VfioMigrationState.RunningP2P);
    protected override void OnPreCopyP2PToStopCopy() => Hook(VfioMigrationState.PreCopyP2P, VfioMigrationState.StopCopy);
    protected override void OnRunningP2PToPreCopyP2P() => Hook(VfioMigrationState.RunningP2P, VfioMigrationState.PreCopyP2P);

    protected override int ReadSavingData(Span<byte> destination, VfioMigrationState state)
    {
        int n = (int)Math.Min(destination.Length, SavingAvailable);
        destination[..n].Fill(0xAB);
        Interlocked.Add(ref _savingAvailable, -n);
        return n;
    }

    protected override void WriteResumingData(ReadOnlySpan<byte> source) => Interlocked.Add(ref _resumed, source.Length);

    protected override PrecopyEstimate GetPrecopyEstimate() => Estimate;

    protected override ulong EstimateStopCopySize() => StopCopySize;

    /// <summary>OnReset throws this (a faulty device), after counting.</summary>
    public Exception? ResetThrows { get; set; }

    protected override void OnReset()
    {
        ResetCount++;
        if (ResetThrows is { } e)
            throw e;
    }

    protected override void OnSessionEnded(DataSessionKind kind) => EndedSessions.Add(kind);
}
