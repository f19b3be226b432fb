using System.Buffers;
using System.Buffers.Binary;

namespace Vfio.Net;

using Stream = System.IO.Stream;

/// <summary>
/// One frame on a channel. Layout (big-endian), see docs/network.md:
/// <code>
///  0        1        2        4                 8                                16               20
///  +--------+--------+--------+-----------------+--------------------------------+----------------+
///  | type   | flags  | rsvd=0 | length (u32)    | sequence (u64)                 | crc32c(0..16)  |
///  +--------+--------+--------+-----------------+--------------------------------+----------------+
///  | payload: length bytes (≤ 4 MiB), AES-256-GCM ciphertext when sealed         |
///  +-----------------------------------------------------------------------------+
///  | sealed: GCM tag (16 bytes; associated data = bytes 0..16)                   |
///  | --insecure: crc32c (u32) of header + payload                                |
///  +-----------------------------------------------------------------------------+
/// </code>
/// The header has its own CRC so that a damaged length or sequence number is caught before it is acted on
/// (a damaged length would otherwise make the reader wait for bytes that never come). The CRC only catches
/// accidents; the GCM tag (with <see cref="NetFrameCipher"/>'s implicit frame counter) catches an attacker.
/// </summary>
internal sealed class NetFrame
{
    private NetFrame(NetFrameType type, ulong sequence, byte[] buffer, int length)
    {
        Type = type;
        Sequence = sequence;
        Buffer = buffer;
        Length = length;
    }

    /// <summary>
    /// Header flag (unsealed Data frames only): the trailer is zero and the payload is not checksummed here, because
    /// the payload is a slice of a stream that checks itself (the engine's migration stream has a CRC32C per frame).
    /// The header is always checked. Sealed frames never carry it: the tag covers everything.
    /// </summary>
    public const byte FlagNoPayloadCrc = 1;

    /// <summary>The frame type.</summary>
    public NetFrameType Type { get; }

    /// <summary>The sequence number (data: segment index; others: type-specific).</summary>
    public ulong Sequence { get; }

    /// <summary>The (pooled) payload buffer; only the first <see cref="Length"/> bytes are valid.</summary>
    public byte[] Buffer { get; private set; }

    /// <summary>Payload length.</summary>
    public int Length { get; }

    /// <summary>The payload.</summary>
    public ReadOnlyMemory<byte> Payload => Buffer.AsMemory(0, Length);

    /// <summary>Gives the payload buffer back to the pool.</summary>
    public void Return()
    {
        var b = Buffer;
        Buffer = [];
        if (b.Length > 0)
            ArrayPool<byte>.Shared.Return(b);
    }

    /// <summary>Writes one frame (header, payload, trailer) to <paramref name="stream"/>; sealed when <paramref name="cipher"/> is given.</summary>
    internal static async ValueTask WriteAsync(Stream stream, NetFrameType type, ulong sequence, ReadOnlyMemory<byte> payload, NetFrameCipher? cipher, CancellationToken cancellationToken)
    {
        if (payload.Length > NetProtocol.MaxFramePayload)
            throw new ArgumentOutOfRangeException(nameof(payload), "frame payload too large");
        byte[] buf = ArrayPool<byte>.Shared.Rent(NetProtocol.FrameHeaderSize + payload.Length + NetProtocol.FrameTrailerSize);
        try
        {
            payload.Span.CopyTo(buf.AsSpan(NetProtocol.FrameHeaderSize));
            int total = EncodeInPlace(buf, type, sequence, payload.Length, cipher, payloadCrc: true);
            await stream.WriteAsync(buf.AsMemory(0, total), cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buf);
        }
    }

    /// <summary>
    /// Completes a frame whose payload already sits at offset <see cref="NetProtocol.FrameHeaderSize"/> of
    /// <paramref name="buffer"/> (with <see cref="NetProtocol.FrameTrailerSize"/> bytes of room after it): writes the
    /// header and the trailer in place, sealing the payload when <paramref name="cipher"/> is given, and returns the
    /// frame length. <paramref name="payloadCrc"/> false skips the payload CRC of an unsealed Data frame.
    /// </summary>
    internal static int EncodeInPlace(Span<byte> buffer, NetFrameType type, ulong sequence, int payloadLength, NetFrameCipher? cipher, bool payloadCrc = true)
    {
        bool skipCrc = cipher is null && !payloadCrc && type == NetFrameType.Data;
        new NetFrameHeader(type, skipCrc, payloadLength, sequence).WriteTo(buffer);
        int end = NetProtocol.FrameHeaderSize + payloadLength;
        if (cipher is not null)
        {
            cipher.Seal(buffer[..16], buffer[NetProtocol.FrameHeaderSize..end], buffer.Slice(end, NetProtocol.TagSize));
            return end + NetProtocol.TagSize;
        }
        BinaryPrimitives.WriteUInt32BigEndian(buffer[end..], skipCrc ? 0u : Crc32C.Compute(buffer[..end]));
        return end + NetProtocol.CrcTrailerSize;
    }

    /// <summary>
    /// Reads one frame, and opens it when <paramref name="cipher"/> is given. Returns null on a clean end of stream
    /// before a header; throws <see cref="VfioException"/> EBADMSG on a bad type, oversize length, CRC mismatch or
    /// failed authentication, ECONNRESET on a cut mid-frame.
    /// </summary>
    internal static ValueTask<NetFrame?> ReadAsync(Stream stream, string channel, NetFrameCipher? cipher, CancellationToken cancellationToken)
        => ReadAsync(stream, channel, cipher, admit: null, cancellationToken);

    /// <summary>
    /// Like <see cref="ReadAsync(Stream, string, NetFrameCipher?, CancellationToken)"/>, and awaits
    /// <paramref name="admit"/> with the decoded header before the payload's buffer is taken from the pool or a byte
    /// of the payload is read: a receiver waits there for room, so what it holds is bounded before it reads.
    /// </summary>
    internal static async ValueTask<NetFrame?> ReadAsync(Stream stream, string channel, NetFrameCipher? cipher, Func<NetFrameHeader, CancellationToken, ValueTask>? admit, CancellationToken cancellationToken)
    {
        byte[] header = new byte[NetProtocol.FrameHeaderSize];
        int got = await ReadAtLeastAsync(stream, header, header.Length, cancellationToken).ConfigureAwait(false);
        if (got == 0)
            return null;
        if (!NetFrameHeader.TryDecode(header.AsSpan(0, got), cipher is not null, channel, out var decoded))
            throw new VfioException(Errno.ECONNRESET, $"read frame on {channel}", "the connection closed in the middle of a frame header");
        if (admit is not null)
            await admit(decoded, cancellationToken).ConfigureAwait(false);
        var (t, noPayloadCrc, length, sequence) = decoded;
        int trailer = cipher is null ? NetProtocol.CrcTrailerSize : NetProtocol.TagSize;
        int rest = length + trailer;
        byte[] body = ArrayPool<byte>.Shared.Rent(rest);
        bool ok = false;
        try
        {
            got = await ReadAtLeastAsync(stream, body, rest, cancellationToken).ConfigureAwait(false);
            if (got < rest)
                throw new VfioException(Errno.ECONNRESET, $"read frame on {channel}", "the connection closed in the middle of a frame");
            if (cipher is not null)
            {
                if (!cipher.Open(header.AsSpan(0, 16), body.AsSpan(0, length), body.AsSpan(length, NetProtocol.TagSize)))
                    throw new VfioException(Errno.EBADMSG, $"read frame on {channel}", $"a {t} frame (sequence {sequence}) failed authentication: it was altered, replayed, reordered, cut out of another channel or session, or sent by someone without the session keys");
            }
            else
            {
                uint want = BinaryPrimitives.ReadUInt32BigEndian(body.AsSpan(length));
                uint crc = noPayloadCrc ? 0u : ~Crc32C.Append(Crc32C.Append(0xFFFFFFFFu, header), body.AsSpan(0, length));
                if (crc != want)
                    throw new VfioException(Errno.EBADMSG, $"read frame on {channel}", $"CRC32C mismatch in a {t} frame (sequence {sequence}): the data was damaged in transit");
            }
            ok = true;
            return new NetFrame(t, sequence, body, length);
        }
        finally
        {
            if (!ok)
                ArrayPool<byte>.Shared.Return(body);
        }
    }

    private static async ValueTask<int> ReadAtLeastAsync(Stream stream, byte[] buffer, int count, CancellationToken cancellationToken)
    {
        int total = 0;
        while (total < count)
        {
            int n;
            try
            {
                n = await stream.ReadAsync(buffer.AsMemory(total, count - total), cancellationToken).ConfigureAwait(false);
            }
            catch (IOException e) when (e is not VfioException)
            {
                throw NetErrors.FromIO(e, "read from peer");
            }
            if (n == 0)
                break;
            total += n;
        }
        return total;
    }
}
