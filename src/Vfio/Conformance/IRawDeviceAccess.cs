using Vfio.Uapi;

namespace Vfio.Conformance;

/// <summary>
/// Optional: a transport whose client library stands between the checker and the device (it keeps the stream
/// objects, refuses requests it considers invalid, or emulates an ioctl) implements this, so every rule judges the
/// device's own answer. vfio-user implements it: there a data stream is not an object of the device (MIG_DATA_READ
/// and MIG_DATA_WRITE address its current session), so ENODEV on an ended stream would be our client's answer.
/// Each method sends exactly one request and returns or throws what the device answered.
/// </summary>
public interface IRawDeviceAccess
{
    /// <summary>One migration data read of <paramref name="size"/> bytes, outside any stream object; returns how many bytes the device returned.</summary>
    ValueTask<int> ReadMigrationDataRawAsync(int size, CancellationToken cancellationToken = default);

    /// <summary>One migration data write, outside any stream object.</summary>
    ValueTask WriteMigrationDataRawAsync(ReadOnlyMemory<byte> data, CancellationToken cancellationToken = default);

    /// <summary>DMA_LOGGING_START exactly as given (no client-side limit on the range count).</summary>
    ValueTask StartDmaLoggingRawAsync(ulong pageSize, IReadOnlyList<VfioDmaLoggingRange> ranges, CancellationToken cancellationToken = default);

    /// <summary>One DMA_LOGGING_REPORT request exactly as given (no client-side check of the page size); fills <paramref name="bitmap"/>.</summary>
    ValueTask ReportDmaLoggingRawAsync(ulong iova, ulong length, ulong pageSize, Memory<ulong> bitmap, CancellationToken cancellationToken = default);

    /// <summary>
    /// Maps guest memory for the device's DMA at [<paramref name="iova"/>, +<paramref name="length"/>) (vfio-user:
    /// a memfd with DMA_MAP), so logging reports name a range the device knows; disposing unmaps it.
    /// </summary>
    ValueTask<IAsyncDisposable> MapDmaAsync(ulong iova, ulong length, CancellationToken cancellationToken = default);

    /// <summary>The size of every data read request the transport sends from now on (null: its default).</summary>
    int? ReadSize { get; set; }

    /// <summary>True when VFIO_MIG_GET_PRECOPY_INFO is emulated by the client (vfio-user has no such request).</summary>
    bool PrecopyInfoEmulated { get; }
}
