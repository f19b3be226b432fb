using System.Runtime.InteropServices;
using Vfio.User.Protocol;

namespace Vfio.User.Transport;

/// <summary>
/// One vfio-user message stream, as the client and the server connection see it: framed messages out (with fds
/// when the transport carries them), headers then payloads in. <see cref="UnixFdSocket"/> is the AF_UNIX socket
/// with SCM_RIGHTS; <see cref="InMemoryVfioUserTransport"/> joins two ends in process for tests that need no
/// socket. Whole-message receives are <see cref="VfioUserTransportExtensions"/> over these calls.
/// </summary>
internal interface IVfioUserTransport : IDisposable
{
    /// <summary>The largest message this end accepts; a larger header is a framing error.</summary>
    int MaxMessageSize { get; set; }

    /// <summary>True when fds can travel with a message (SCM_RIGHTS); a transport without them refuses sends that carry some.</summary>
    bool CarriesFds { get; }

    /// <summary>The transport's (send, receive) buffering in bytes as it reports it; 0 when closed or unknown.</summary>
    (int Send, int Receive) BufferSizes { get; }

    /// <summary>Sends one complete message (header included in <paramref name="message"/>), with optional fds; the caller keeps its handles.</summary>
    /// <exception cref="VfioException">ENOTCONN (a broken pipe) or ECONNRESET once the stream is closed; EOPNOTSUPP for fds on a transport without them.</exception>
    ValueTask SendAsync(ReadOnlyMemory<byte> message, IReadOnlyList<SafeHandle>? fds = null, CancellationToken cancellationToken = default);

    /// <summary>Sends one message in two pieces (e.g. header + head, then data from elsewhere) with nothing between them.</summary>
    ValueTask SendInTwoPartsAsync(ReadOnlyMemory<byte> message, ReadOnlyMemory<byte> tail, CancellationToken cancellationToken = default);

    /// <summary>
    /// Receives and validates the 16-byte header of the next message and the fds sent with it; the payload stays
    /// in the stream for <see cref="ReceivePayloadAsync"/>. Null on a clean end of stream at a message boundary.
    /// </summary>
    /// <exception cref="VfioUserFramingException">msg_size out of bounds (the stream is lost).</exception>
    /// <exception cref="VfioUserProtocolException">End of stream inside the header, or more fds than this end accepts.</exception>
    ValueTask<(VfioUserHeader Header, ReceivedFds Fds)?> ReceiveHeaderAsync(CancellationToken cancellationToken = default);

    /// <summary>
    /// Fills <paramref name="destination"/> with the next payload bytes of the message <paramref name="header"/>
    /// announced (callers may split a payload across several destinations; together they cover it exactly).
    /// </summary>
    /// <exception cref="VfioUserProtocolException">End of stream inside the payload.</exception>
    ValueTask ReceivePayloadAsync(VfioUserHeader header, Memory<byte> destination, CancellationToken cancellationToken = default);

    /// <summary>Ends the stream both ways without disposing: pending and later receives here see the end, the peer sees end of stream after what was sent.</summary>
    void Shutdown();
}

/// <summary>Whole-message receives, the same over every <see cref="IVfioUserTransport"/>.</summary>
internal static class VfioUserTransportExtensions
{
    /// <summary>Receives one whole message; null on a clean end of stream at a message boundary.</summary>
    /// <exception cref="VfioUserFramingException">msg_size out of bounds (body not read; the stream is lost).</exception>
    /// <exception cref="VfioUserProtocolException">More fds than accepted, or the peer closed in the middle of a message.</exception>
    public static async ValueTask<VfioUserMessage?> ReceiveAsync(this IVfioUserTransport transport, CancellationToken cancellationToken = default)
    {
        if (await transport.ReceiveHeaderAsync(cancellationToken).ConfigureAwait(false) is not var (header, fds))
            return null;
        try
        {
            return await transport.ReceiveBodyAsync(header, fds, cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            fds.Dispose();
            throw;
        }
    }

    /// <summary>Receives the whole payload announced by <paramref name="header"/> into a pooled message that owns <paramref name="fds"/>.</summary>
    public static async ValueTask<VfioUserMessage> ReceiveBodyAsync(this IVfioUserTransport transport, VfioUserHeader header, ReceivedFds fds, CancellationToken cancellationToken = default)
    {
        int length = header.PayloadLength;
        var buffer = System.Buffers.ArrayPool<byte>.Shared.Rent(Math.Max(length, 1));
        try
        {
            await transport.ReceivePayloadAsync(header, buffer.AsMemory(0, length), cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            System.Buffers.ArrayPool<byte>.Shared.Return(buffer);
            throw;
        }
        return new VfioUserMessage(header, buffer, length, fds);
    }

    /// <summary>The peer ended the stream inside a header.</summary>
    internal static VfioUserProtocolException ClosedInHeader(int got)
        => new($"the peer closed the connection after {got} of 16 header bytes");

    /// <summary>The peer ended the stream inside a payload.</summary>
    internal static VfioUserProtocolException ClosedInPayload(VfioUserHeader header)
        => new($"the peer closed the connection in the middle of the {header.PayloadLength}-byte payload of {header.Command}");
}
