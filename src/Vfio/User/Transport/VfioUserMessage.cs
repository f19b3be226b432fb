using System.Buffers;
using Vfio.User.Protocol;

namespace Vfio.User.Transport;

/// <summary>One received message: header, payload (pooled buffer) and its fds. Dispose returns the buffer and closes unclaimed fds.</summary>
internal sealed class VfioUserMessage : IDisposable
{
    private byte[]? _buffer;

    internal VfioUserMessage(VfioUserHeader header, byte[] buffer, int payloadLength, ReceivedFds fds)
    {
        Header = header;
        _buffer = buffer;
        PayloadLength = payloadLength;
        Fds = fds;
    }

    /// <summary>Creates a message from a complete byte image (tests, fuzzing).</summary>
    public static VfioUserMessage FromBytes(VfioUserHeader header, ReadOnlySpan<byte> payload)
    {
        var buffer = ArrayPool<byte>.Shared.Rent(Math.Max(payload.Length, 1));
        payload.CopyTo(buffer);
        return new VfioUserMessage(header, buffer, payload.Length, ReceivedFds.Empty);
    }

    /// <summary>The header.</summary>
    public VfioUserHeader Header { get; }

    /// <summary>Payload length (msg_size − 16).</summary>
    public int PayloadLength { get; }

    /// <summary>The payload bytes.</summary>
    public ReadOnlySpan<byte> Payload => _buffer is null ? throw new ObjectDisposedException(nameof(VfioUserMessage)) : _buffer.AsSpan(0, PayloadLength);

    /// <summary>The payload as memory.</summary>
    public ReadOnlyMemory<byte> PayloadMemory => _buffer is null ? throw new ObjectDisposedException(nameof(VfioUserMessage)) : _buffer.AsMemory(0, PayloadLength);

    /// <summary>The fds that came with the message.</summary>
    public ReceivedFds Fds { get; }

    /// <inheritdoc/>
    public void Dispose()
    {
        var b = Interlocked.Exchange(ref _buffer, null);
        if (b is not null)
            ArrayPool<byte>.Shared.Return(b);
        Fds.Dispose();
    }
}
