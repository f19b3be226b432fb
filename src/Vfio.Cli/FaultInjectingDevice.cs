using Vfio.Device;
using Vfio.Migration;
using Vfio.Uapi;

namespace Vfio.Cli;

/// <summary>
/// Test aid behind <c>receive --inject-fault resume-stop</c>: a destination device whose RESUMING→STOP arc (where a
/// driver validates the loaded state) fails with EIO, as a device rejecting bad state would.
/// </summary>
internal sealed class FaultInjectingDevice(IVfioMigrationDevice inner) : IVfioMigrationDevice
{
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
        var stream = await inner.SetStateAsync(target, cancellationToken).ConfigureAwait(false);
        if (target == VfioMigrationState.Resuming)
            _resuming = true;
        return stream;
    }

    public ValueTask<ulong> GetStopCopySizeAsync(CancellationToken cancellationToken = default) => inner.GetStopCopySizeAsync(cancellationToken);

    public ValueTask ResetAsync(CancellationToken cancellationToken = default)
    {
        _resuming = false;
        return inner.ResetAsync(cancellationToken);
    }

    public ValueTask<Compat.MigrationProfile> GetProfileAsync(CancellationToken cancellationToken = default) => inner.GetProfileAsync(cancellationToken);

    public ValueTask<bool> TryEnablePrecopyInfoV2Async(CancellationToken cancellationToken = default) => inner.TryEnablePrecopyInfoV2Async(cancellationToken);

    public ValueTask<ulong> StartDmaLoggingAsync(ulong pageSize, IReadOnlyList<VfioDmaLoggingRange> ranges, CancellationToken cancellationToken = default) => inner.StartDmaLoggingAsync(pageSize, ranges, cancellationToken);

    public ValueTask StopDmaLoggingAsync(CancellationToken cancellationToken = default) => inner.StopDmaLoggingAsync(cancellationToken);

    public ValueTask ReportDmaLoggingAsync(ulong iova, ulong length, ulong pageSize, Memory<ulong> bitmap, CancellationToken cancellationToken = default) => inner.ReportDmaLoggingAsync(iova, length, pageSize, bitmap, cancellationToken);

    public ValueTask DisposeAsync() => inner.DisposeAsync();
}
