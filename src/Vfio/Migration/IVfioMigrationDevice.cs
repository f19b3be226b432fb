using Vfio.Device;
using Vfio.Uapi;

namespace Vfio.Migration;

/// <summary>
/// The user (VMM) side view of one migration-capable device. Every transport implements it: in-process,
/// vfio-user client, the Linux kernel (ioctls on /dev/vfio) and remote peers. The migration engine,
/// the conformance checker and the CLI only speak to this interface.
/// </summary>
/// <remarks>Errors surface as <see cref="VfioException"/> carrying the errno the device (or kernel, or peer) returned.</remarks>
public interface IVfioMigrationDevice : IAsyncDisposable
{
    /// <summary>A short name for messages, e.g. <c>unix:/run/dev.sock</c> or <c>sample:0</c>.</summary>
    string Name { get; }

    /// <summary>VFIO_DEVICE_FEATURE_MIGRATION: the capability flags (ENOTTY without migration).</summary>
    ValueTask<VfioMigrationFlags> GetCapabilitiesAsync(CancellationToken cancellationToken = default);

    /// <summary>GET MIG_DEVICE_STATE.</summary>
    ValueTask<VfioMigrationState> GetStateAsync(CancellationToken cancellationToken = default);

    /// <summary>
    /// SET MIG_DEVICE_STATE. Returns the new data stream when the request opens a saving or resuming
    /// session, else null. After a failure the state is whatever <see cref="GetStateAsync"/> reports.
    /// </summary>
    ValueTask<IMigrationDataStream?> SetStateAsync(VfioMigrationState target, CancellationToken cancellationToken = default);

    /// <summary>VFIO_DEVICE_FEATURE_MIG_DATA_SIZE: the STOP_COPY size estimate (ENOTTY/EINVAL where unsupported).</summary>
    ValueTask<ulong> GetStopCopySizeAsync(CancellationToken cancellationToken = default);

    /// <summary>VFIO_DEVICE_RESET: state RUNNING, every data stream terminated.</summary>
    ValueTask ResetAsync(CancellationToken cancellationToken = default);

    /// <summary>
    /// SET MIG_PRECOPY_INFOv2 (feature 12, spec §4.7): opt in to REINIT reporting for as long as the device stays
    /// open. True when the device accepted; false when it does not offer it (kernels before 7.1, transports without
    /// PRECOPY_INFO, devices without PRE_COPY). The default is false: a transport opts in only where it can.
    /// </summary>
    ValueTask<bool> TryEnablePrecopyInfoV2Async(CancellationToken cancellationToken = default) => ValueTask.FromResult(false);

    /// <summary>
    /// The device's migration profile (identity, caps, regions, stop-copy size, device-defined format), compared
    /// before a migration by <see cref="Compat.CompatibilityCheck"/>. The default knows only caps and size.
    /// </summary>
    ValueTask<Compat.MigrationProfile> GetProfileAsync(CancellationToken cancellationToken = default)
        => Compat.MigrationProfiles.ReadAsync(this, new Compat.DeviceIdentity(), [], null, cancellationToken);

    /// <summary>DMA_LOGGING_START; returns the page size the device chose.</summary>
    ValueTask<ulong> StartDmaLoggingAsync(ulong pageSize, IReadOnlyList<VfioDmaLoggingRange> ranges, CancellationToken cancellationToken = default);

    /// <summary>DMA_LOGGING_STOP.</summary>
    ValueTask StopDmaLoggingAsync(CancellationToken cancellationToken = default);

    /// <summary>DMA_LOGGING_REPORT: read-and-clear into <paramref name="bitmap"/> (bits are only set, never cleared).</summary>
    ValueTask ReportDmaLoggingAsync(ulong iova, ulong length, ulong pageSize, Memory<ulong> bitmap, CancellationToken cancellationToken = default);
}

/// <summary>
/// One migration data stream (the kernel's data fd; MIG_DATA_READ/WRITE over vfio-user).
/// Reads and writes keep the byte order; the content is opaque.
/// </summary>
public interface IMigrationDataStream : IAsyncDisposable
{
    /// <summary>Saving (read) or resuming (write).</summary>
    DataSessionKind Kind { get; }

    /// <summary>
    /// Reads the next bytes. 0 at the permanent end of a STOP_COPY stream; in PRE_COPY a device either
    /// throws ENOMSG or returns 0 at the temporary end (spec §4.5) — callers treat both as "nothing for now".
    /// </summary>
    ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default);

    /// <summary>Writes all of <paramref name="buffer"/>, in order.</summary>
    ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default);

    /// <summary>VFIO_MIG_GET_PRECOPY_INFO (saving stream in PRE_COPY states only).</summary>
    ValueTask<PrecopyEstimate> GetPrecopyInfoAsync(CancellationToken cancellationToken = default);
}
