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
///  | payload: length bytes (≤ 4 MiB)                                             |
///  +-----------------------------------------------------------------------------+
///  | crc32c (u32) of header + payload                                            |
///  +-----------------------------------------------------------------------------+
/// </code>
/// The header has its own CRC so that a damaged length or sequence number is caught before it is acted on
/// (a damaged length would otherwise make the reader wait for bytes that never come).
/// </summary>
/// <remarks>The payload buffer is rented from <see cref="ArrayPool{T}.Shared"/>; call <see cref="Return"/> once done.</remarks>
public sealed class NetFrame
{
    private NetFrame(NetFrameType type, ulong sequence, byte[] buffer, int length)
    {
        Type = type;
        Sequence = sequence;
        Buffer = buffer;
        Length = length;
    }

    /// <summary>
    /// Header flag (Data frames only): the trailer is zero and the payload is not checksummed here, because the
    /// payload is a slice of a stream that checks itself (the engine's migration stream has a CRC32C per frame).
    /// The header is always checked.
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

    /// <summary>Writes one frame (header, payload, CRC) to <paramref name="stream"/>.</summary>
    public static async ValueTask WriteAsync(Stream stream, NetFrameType type, ulong sequence, ReadOnlyMemory<byte> payload, CancellationToken cancellationToken)
    {
        if (payload.Length > NetProtocol.MaxFramePayload)
            throw new ArgumentOutOfRangeException(nameof(payload), "frame payload too large");
        int total = NetProtocol.FrameHeaderSize + payload.Length + NetProtocol.FrameTrailerSize;
        byte[] buf = ArrayPool<byte>.Shared.Rent(total);
        try
        {
            Encode(buf, type, sequence, payload.Span);
            await stream.WriteAsync(buf.AsMemory(0, total), cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buf);
        }
    }

    /// <summary>
    /// Completes a frame whose payload already sits at offset <see cref="NetProtocol.FrameHeaderSize"/> of
    /// <paramref name="buffer"/>: writes the header and the CRC trailer in place and returns the frame length.
    /// </summary>
    public static int EncodeInPlace(Span<byte> buffer, NetFrameType type, ulong sequence, int payloadLength, bool payloadCrc = true)
    {
        buffer[0] = (byte)type;
        buffer[1] = payloadCrc ? (byte)0 : FlagNoPayloadCrc;
        BinaryPrimitives.WriteUInt16BigEndian(buffer[2..], 0);
        BinaryPrimitives.WriteUInt32BigEndian(buffer[4..], (uint)payloadLength);
        BinaryPrimitives.WriteUInt64BigEndian(buffer[8..], sequence);
        BinaryPrimitives.WriteUInt32BigEndian(buffer[16..], Crc32C.Compute(buffer[..16]));
        int end = NetProtocol.FrameHeaderSize + payloadLength;
        BinaryPrimitives.WriteUInt32BigEndian(buffer[end..], payloadCrc ? Crc32C.Compute(buffer[..end]) : 0u);
        return end + NetProtocol.FrameTrailerSize;
    }

    /// <summary>Encodes a frame into <paramref name="destination"/> (header + payload + CRC).</summary>
    public static int Encode(Span<byte> destination, NetFrameType type, ulong sequence, ReadOnlySpan<byte> payload)
    {
        destination[0] = (byte)type;
        destination[1] = 0;
        BinaryPrimitives.WriteUInt16BigEndian(destination[2..], 0);
        BinaryPrimitives.WriteUInt32BigEndian(destination[4..], (uint)payload.Length);
        BinaryPrimitives.WriteUInt64BigEndian(destination[8..], sequence);
        BinaryPrimitives.WriteUInt32BigEndian(destination[16..], Crc32C.Compute(destination[..16]));
        payload.CopyTo(destination[NetProtocol.FrameHeaderSize..]);
        int end = NetProtocol.FrameHeaderSize + payload.Length;
        uint crc = Crc32C.Compute(destination[..end]);
        BinaryPrimitives.WriteUInt32BigEndian(destination[end..], crc);
        return end + NetProtocol.FrameTrailerSize;
    }

    /// <summary>
    /// Reads one frame. Returns null on a clean end of stream before a header; throws
    /// <see cref="VfioException"/> EBADMSG on a bad type, oversize length or CRC mismatch, ECONNRESET on a cut mid-frame.
    /// </summary>
    public static async ValueTask<NetFrame?> ReadAsync(Stream stream, string channel, CancellationToken cancellationToken)
    {
        byte[] header = new byte[NetProtocol.FrameHeaderSize];
        int got = await ReadAtLeastAsync(stream, header, header.Length, cancellationToken).ConfigureAwait(false);
        if (got == 0)
            return null;
        if (got < header.Length)
            throw new VfioException(Errno.ECONNRESET, $"read frame on {channel}", "the connection closed in the middle of a frame header");
        if (Crc32C.Compute(header.AsSpan(0, 16)) != BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(16)))
            throw new VfioException(Errno.EBADMSG, $"read frame on {channel}", "CRC32C mismatch in a frame header: the data was damaged in transit");
        byte t = header[0];
        bool noPayloadCrc = header[1] == FlagNoPayloadCrc && t == (byte)NetFrameType.Data;
        if (t is < (byte)NetFrameType.Data or > (byte)NetFrameType.Bye || (header[1] != 0 && !noPayloadCrc) || header[2] != 0 || header[3] != 0)
            throw new VfioException(Errno.EBADMSG, $"read frame on {channel}", $"corrupted frame header (type {t}, flags {header[1]}): the data was damaged in transit");
        uint length = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(4));
        if (length > NetProtocol.MaxFramePayload)
            throw new VfioException(Errno.EBADMSG, $"read frame on {channel}", $"frame length {length} exceeds the limit of {NetProtocol.MaxFramePayload} bytes: the data was damaged in transit or the peer misbehaves");
        ulong sequence = BinaryPrimitives.ReadUInt64BigEndian(header.AsSpan(8));
        int rest = (int)length + NetProtocol.FrameTrailerSize;
        byte[] body = ArrayPool<byte>.Shared.Rent(rest);
        bool ok = false;
        try
        {
            got = await ReadAtLeastAsync(stream, body, rest, cancellationToken).ConfigureAwait(false);
            if (got < rest)
                throw new VfioException(Errno.ECONNRESET, $"read frame on {channel}", "the connection closed in the middle of a frame");
            uint want = BinaryPrimitives.ReadUInt32BigEndian(body.AsSpan((int)length));
            uint crc = noPayloadCrc ? 0u : ~Crc32C.Append(Crc32C.Append(0xFFFFFFFFu, header), body.AsSpan(0, (int)length));
            if (crc != want)
                throw new VfioException(Errno.EBADMSG, $"read frame on {channel}", $"CRC32C mismatch in a {(NetFrameType)t} frame (sequence {sequence}): the data was damaged in transit");
            ok = true;
            return new NetFrame((NetFrameType)t, sequence, body, (int)length);
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
