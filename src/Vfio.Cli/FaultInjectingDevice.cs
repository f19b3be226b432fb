using Vfio.Device;
using Vfio.Migration;
using Vfio.Uapi;

namespace Vfio.Cli;

/// <summary>
/// Test aid behind <c>receive --inject-fault</c>: a destination device that fails with EIO either its RESUMING→STOP
/// arc (<c>resume-stop</c>, where a driver validates the loaded state, as a device rejecting bad state would) or its
/// start after the commit (<c>start</c>: STOP→RUNNING_P2P or RUNNING, which leaves the migration held).
/// </summary>
internal sealed class FaultInjectingDevice(IVfioMigrationDevice inner, string fault) : IVfioMigrationDevice
{
    /// <summary>The values <c>--inject-fault</c> takes.</summary>
    public static readonly string[] Faults = ["resume-stop", "start"];

    private bool _resuming;

    public string Name => inner.Name;

    public ValueTask<VfioMigrationFlags> GetCapabilitiesAsync(CancellationToken cancellationToken = default) => inner.GetCapabilitiesAsync(cancellationToken);

    public ValueTask<VfioMigrationState> GetStateAsync(CancellationToken cancellationToken = default) => inner.GetStateAsync(cancellationToken);

    public async ValueTask<IMigrationDataStream?> SetStateAsync(VfioMigrationState target, CancellationToken cancellationToken = default)
    {
        if (_resuming && target != VfioMigrationState.Resuming)
        {
            _resuming = false;
            throw new VfioException(Errno.EIO, $"SET device_state RESUMING>{target}", "injected fault: the device rejected the loaded state (--inject-fault resume-stop)");
        }
        if (fault == "start" && target is VfioMigrationState.Running or VfioMigrationState.RunningP2P
            && await inner.GetStateAsync(cancellationToken).ConfigureAwait(false) == VfioMigrationState.Stop)
        {
            throw new VfioException(Errno.EIO, $"SET device_state STOP>{target}", "injected fault: the device failed to start (--inject-fault start)");
        }
        var stream = await inner.SetStateAsync(target, cancellationToken).ConfigureAwait(false);
        if (target == VfioMigrationState.Resuming && fault == "resume-stop")
            _resuming = true;
        return stream;
    }

    public ValueTask<ulong> GetStopCopySizeAsync(CancellationToken cancellationToken = default) => inner.GetStopCopySizeAsync(cancellationToken);

    public ValueTask ResetAsync(CancellationToken cancellationToken = default)
    {
        _resuming = false;
        return inner.ResetAsync(cancellationToken);
    }

    public ValueTask<ulong> StartDmaLoggingAsync(ulong pageSize, IReadOnlyList<VfioDmaLoggingRange> ranges, CancellationToken cancellationToken = default) => inner.StartDmaLoggingAsync(pageSize, ranges, cancellationToken);

    public ValueTask StopDmaLoggingAsync(CancellationToken cancellationToken = default) => inner.StopDmaLoggingAsync(cancellationToken);

    public ValueTask ReportDmaLoggingAsync(ulong iova, ulong length, ulong pageSize, Memory<ulong> bitmap, CancellationToken cancellationToken = default) => inner.ReportDmaLoggingAsync(iova, length, pageSize, bitmap, cancellationToken);

    public ValueTask DisposeAsync() => inner.DisposeAsync();
}
