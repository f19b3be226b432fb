using System.Buffers.Binary;
using Vfio.Interop;
using Vfio.Uapi;
using Vfio.User.Protocol;

namespace Vfio.User.Client;

// vfio-mig check asks the server itself where this client would answer on its own (stream objects, the range-count
// limit, the page-size check) or has nothing to send (PRECOPY_INFO is emulated): one request each, no client rules.
public sealed partial class VfioUserMigrationDevice : Conformance.IRawDeviceAccess
{
    private int? _readSize;

    /// <inheritdoc/>
    public int? ReadSize
    {
        get => _readSize;
        set => _readSize = value is { } v ? Math.Max(1, v) : null;
    }

    /// <summary>vfio-user has no VFIO_MIG_GET_PRECOPY_INFO; the stream emulates it (always true).</summary>
    public bool PrecopyInfoEmulated => true;

    // The read request size of the data stream: the caller's limit, within what the server accepts in one reply.
    private int ReadRequestSize => _readSize is { } limit ? Math.Min(limit, Client.ReadChunk) : Client.ReadChunk;

    /// <inheritdoc/>
    public async ValueTask<int> ReadMigrationDataRawAsync(int size, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(size);
        using var reply = await Client.RequestAsync(VfioUserCommand.MigDataRead, VfioUserClient.MigDataReadRequest(size), null, cancellationToken).ConfigureAwait(false);
        var buffer = new byte[size];
        return VfioUserClient.TakeMigData(reply, size, buffer);
    }

    /// <inheritdoc/>
    public async ValueTask WriteMigrationDataRawAsync(ReadOnlyMemory<byte> data, CancellationToken cancellationToken = default)
    {
        using var reply = await Client.RequestAsync(VfioUserCommand.MigDataWrite, VfioUserClient.MigDataWriteRequest(data.Span), null, cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc/>
    public async ValueTask StartDmaLoggingRawAsync(ulong pageSize, IReadOnlyList<VfioDmaLoggingRange> ranges, CancellationToken cancellationToken = default)
        => await SendDmaLoggingStartAsync(pageSize, ranges, cancellationToken).ConfigureAwait(false);

    /// <inheritdoc/>
    public async ValueTask ReportDmaLoggingRawAsync(ulong iova, ulong length, ulong pageSize, Memory<ulong> bitmap, CancellationToken cancellationToken = default)
    {
        ulong words = pageSize == 0 ? 1 : Math.Min(VfioDmaLoggingReport.BitmapWords(length, pageSize), (ulong)ProtocolLimits.MaxDataTransferBytes / 8);
        var reply = await Client.FeatureAsync(ReportRequest(iova, length, pageSize, words), cancellationToken).ConfigureAwait(false);
        int present = Math.Min(bitmap.Length, Math.Max(0, (reply.Length - 32) / 8));
        for (int i = 0; i < present; i++)
            bitmap.Span[i] |= BinaryPrimitives.ReadUInt64LittleEndian(reply.AsSpan(32 + (i * 8)));
    }

    /// <inheritdoc/>
    public async ValueTask<IAsyncDisposable> MapDmaAsync(ulong iova, ulong length, CancellationToken cancellationToken = default)
    {
        var memory = SafeFdHandle.CreateMemFd((long)length);
        try
        {
            await Client.DmaMapAsync(iova, length, memory, 0, cancellationToken: cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            memory.Dispose();
            throw;
        }
        return new DmaMapping(Client, iova, length, memory);
    }

    // Unmaps when disposed; the memfd (our copy of the guest memory) is closed after the server let go of it.
    private sealed class DmaMapping(VfioUserClient client, ulong iova, ulong length, SafeFdHandle memory) : IAsyncDisposable
    {
        public async ValueTask DisposeAsync()
        {
            try
            {
                await client.DmaUnmapAsync(iova, length).ConfigureAwait(false);
            }
            finally
            {
                memory.Dispose();
            }
        }
    }
}
