using System.Runtime.InteropServices;
using System.Threading.Channels;
using Vfio.User.Protocol;

namespace Vfio.User.Transport;

/// <summary>
/// Two <see cref="IVfioUserTransport"/> ends joined in process: each direction is a bounded queue of byte chunks
/// (a message, or a two-part message, per chunk), read as a stream exactly as a socket is — headers checked the
/// same way, end of stream at a message boundary is null, inside one it is a protocol error. No fds: a test that
/// passes fds needs a real socket (<see cref="UnixFdSocket"/>); sending some here fails with EOPNOTSUPP.
/// </summary>
internal sealed class InMemoryVfioUserTransport : IVfioUserTransport
{
    // Chunks in flight per direction: a reader that stops reading stalls its peer's sends, as a full socket does.
    private const int QueuedChunks = 64;

    private readonly Channel<byte[]> _inbound;
    private readonly Channel<byte[]> _outbound;
    private byte[]? _chunk;
    private int _chunkOffset;
    private int _disposed;

    private InMemoryVfioUserTransport(Channel<byte[]> inbound, Channel<byte[]> outbound, int maxMessageSize)
    {
        _inbound = inbound;
        _outbound = outbound;
        MaxMessageSize = maxMessageSize;
    }

    /// <summary>Two connected ends: what one sends the other receives.</summary>
    public static (InMemoryVfioUserTransport, InMemoryVfioUserTransport) CreatePair(int maxMessageSize = ProtocolLimits.MaxMessageBytes)
    {
        var aToB = NewDirection();
        var bToA = NewDirection();
        return (new InMemoryVfioUserTransport(bToA, aToB, maxMessageSize), new InMemoryVfioUserTransport(aToB, bToA, maxMessageSize));
    }

    private static Channel<byte[]> NewDirection()
        => Channel.CreateBounded<byte[]>(new BoundedChannelOptions(QueuedChunks) { SingleReader = true, FullMode = BoundedChannelFullMode.Wait });

    /// <inheritdoc/>
    public int MaxMessageSize { get; set; }

    /// <inheritdoc/>
    public bool CarriesFds => false;

    /// <inheritdoc/>
    public (int Send, int Receive) BufferSizes => (0, 0);

    /// <inheritdoc/>
    public ValueTask SendAsync(ReadOnlyMemory<byte> message, IReadOnlyList<SafeHandle>? fds = null, CancellationToken cancellationToken = default)
    {
        if (fds is { Count: > 0 })
            throw new VfioException(Errno.EOPNOTSUPP, "send vfio-user message", "an in-memory transport carries no fds (use a socket)");
        return WriteChunkAsync(message.ToArray(), cancellationToken);
    }

    /// <inheritdoc/>
    public ValueTask SendInTwoPartsAsync(ReadOnlyMemory<byte> message, ReadOnlyMemory<byte> tail, CancellationToken cancellationToken = default)
    {
        var whole = new byte[message.Length + tail.Length];
        message.CopyTo(whole);
        tail.CopyTo(whole.AsMemory(message.Length));
        return WriteChunkAsync(whole, cancellationToken);
    }

    private async ValueTask WriteChunkAsync(byte[] chunk, CancellationToken cancellationToken)
    {
        ThrowIfDisposed("send vfio-user message");
        try
        {
            await _outbound.Writer.WriteAsync(chunk, cancellationToken).ConfigureAwait(false);
        }
        catch (ChannelClosedException ex)
        {
            throw new VfioException(Errno.ENOTCONN, "send vfio-user message", "the connection is shut down", ex); // a socket's EPIPE
        }
    }

    /// <inheritdoc/>
    public async ValueTask<(VfioUserHeader Header, ReceivedFds Fds)?> ReceiveHeaderAsync(CancellationToken cancellationToken = default)
    {
        var headerBytes = new byte[VfioUserHeader.Size];
        int got = await ReadAsync(headerBytes, cancellationToken).ConfigureAwait(false);
        if (got == 0)
            return null;
        if (got < VfioUserHeader.Size)
            throw VfioUserTransportExtensions.ClosedInHeader(got);
        return (VfioUserFrame.ReadHeader(headerBytes, MaxMessageSize), ReceivedFds.Empty);
    }

    /// <inheritdoc/>
    public async ValueTask ReceivePayloadAsync(VfioUserHeader header, Memory<byte> destination, CancellationToken cancellationToken = default)
    {
        if (await ReadAsync(destination, cancellationToken).ConfigureAwait(false) < destination.Length)
            throw VfioUserTransportExtensions.ClosedInPayload(header);
    }

    // Fills destination from the inbound chunks; returns fewer bytes only at the end of the stream.
    private async ValueTask<int> ReadAsync(Memory<byte> destination, CancellationToken cancellationToken)
    {
        ThrowIfDisposed("receive vfio-user message");
        int read = 0;
        while (read < destination.Length)
        {
            if (_chunk is null || _chunkOffset == _chunk.Length)
            {
                if (!_inbound.Reader.TryRead(out _chunk))
                {
                    if (!await _inbound.Reader.WaitToReadAsync(cancellationToken).ConfigureAwait(false))
                        return read;
                    continue;
                }
                _chunkOffset = 0;
                continue;
            }
            int n = Math.Min(destination.Length - read, _chunk.Length - _chunkOffset);
            _chunk.AsMemory(_chunkOffset, n).CopyTo(destination[read..]);
            _chunkOffset += n;
            read += n;
        }
        return read;
    }

    /// <inheritdoc/>
    public void Shutdown()
    {
        // Our sends end (the peer reads what was queued, then end of stream); the peer's sends to us fail with
        // ENOTCONN (a socket's EPIPE), and we read what was queued, then end of stream.
        _outbound.Writer.TryComplete();
        _inbound.Writer.TryComplete();
    }

    private void ThrowIfDisposed(string operation)
    {
        if (Volatile.Read(ref _disposed) != 0)
            throw new VfioException(Errno.ENOTCONN, operation, "the connection is closed");
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
            Shutdown();
    }
}
