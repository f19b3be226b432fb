using Vfio.Uapi;
using Vfio.Device;
using Vfio.Migration;

namespace Vfio.Tests.Engine;

/// <summary>
/// Watches the invariant "at no instant do a source device and its destination both run" (docs/commit-protocol.md):
/// every transition of a <see cref="LedgerDevice"/> is noted; a running source and a running destination of the same
/// pair at once is recorded as a violation. A destination "runs a copy" only after a SET into a running state
/// (a reset sample device runs, but blank).
/// </summary>
internal sealed class LiveCopyLedger(int pairs)
{
    private readonly object _gate = new();
    private readonly bool[] _source = Enumerable.Repeat(true, pairs).ToArray();
    private readonly bool[] _destination = new bool[pairs];

    public List<string> Violations { get; } = [];

    public static bool IsRunning(VfioMigrationState s)
        => s is VfioMigrationState.Running or VfioMigrationState.RunningP2P or VfioMigrationState.PreCopy or VfioMigrationState.PreCopyP2P;

    public void Note(int pair, bool source, bool running, string what)
    {
        lock (_gate)
        {
            if (source)
                _source[pair] = running;
            else
                _destination[pair] = running;
            if (_source[pair] && _destination[pair])
                Violations.Add($"pair {pair}: both run after {(source ? "source" : "destination")} {what}");
        }
    }
}

/// <summary>A device whose transitions are noted in a <see cref="LiveCopyLedger"/> (into a running state: before the call, conservatively).</summary>
internal sealed class LedgerDevice(IVfioMigrationDevice inner, LiveCopyLedger ledger, int pair, bool source) : IVfioMigrationDevice
{
    public string Name => inner.Name;

    public ValueTask<VfioMigrationFlags> GetCapabilitiesAsync(CancellationToken cancellationToken = default) => inner.GetCapabilitiesAsync(cancellationToken);

    public ValueTask<VfioMigrationState> GetStateAsync(CancellationToken cancellationToken = default) => inner.GetStateAsync(cancellationToken);

    public async ValueTask<IMigrationDataStream?> SetStateAsync(VfioMigrationState target, CancellationToken cancellationToken = default)
    {
        bool running = LiveCopyLedger.IsRunning(target);
        if (running)
            ledger.Note(pair, source, true, "SET " + MigrationStateMachine.Name(target));
        var stream = await inner.SetStateAsync(target, cancellationToken);
        if (!running)
            ledger.Note(pair, source, false, "SET " + MigrationStateMachine.Name(target));
        return stream;
    }

    public ValueTask<ulong> GetStopCopySizeAsync(CancellationToken cancellationToken = default) => inner.GetStopCopySizeAsync(cancellationToken);

    public async ValueTask ResetAsync(CancellationToken cancellationToken = default)
    {
        await inner.ResetAsync(cancellationToken);
        // A reset device runs, but holds no copy of anything: for a source that would be a lost state (the
        // digest checks catch it), for a destination it is the safe end of an aborted load.
        ledger.Note(pair, source, false, "reset");
    }

    public ValueTask<ulong> StartDmaLoggingAsync(ulong pageSize, IReadOnlyList<VfioDmaLoggingRange> ranges, CancellationToken cancellationToken = default)
        => inner.StartDmaLoggingAsync(pageSize, ranges, cancellationToken);

    public ValueTask StopDmaLoggingAsync(CancellationToken cancellationToken = default) => inner.StopDmaLoggingAsync(cancellationToken);

    public ValueTask ReportDmaLoggingAsync(ulong iova, ulong length, ulong pageSize, Memory<ulong> bitmap, CancellationToken cancellationToken = default)
        => inner.ReportDmaLoggingAsync(iova, length, pageSize, bitmap, cancellationToken);

    public ValueTask DisposeAsync() => inner.DisposeAsync();
}
