using System.Buffers.Binary;

namespace Vfio.Net;

/// <summary>
/// The 20-byte header of a channel frame (layout in <see cref="NetFrame"/>), decoded by a pure function: the length is
/// checked first, then the header's own CRC32C, then every field, before any length from the peer is acted on.
/// </summary>
internal readonly record struct NetFrameHeader(NetFrameType Type, bool NoPayloadCrc, int PayloadLength, ulong Sequence)
{
    /// <summary>
    /// Decodes the header at the start of <paramref name="bytes"/>. Returns false when fewer than
    /// <see cref="NetProtocol.FrameHeaderSize"/> bytes are there (more are needed); throws <see cref="VfioException"/>
    /// EBADMSG for a CRC mismatch, an unknown type, a flag or reserved byte that is not allowed (the no-payload-CRC
    /// flag only on an unsealed Data frame), or a payload length above <see cref="NetProtocol.MaxFramePayload"/>.
    /// </summary>
    public static bool TryDecode(ReadOnlySpan<byte> bytes, bool sealedFrames, string channel, out NetFrameHeader header)
    {
        header = default;
        if (bytes.Length < NetProtocol.FrameHeaderSize)
            return false;
        if (Crc32C.Compute(bytes[..16]) != BinaryPrimitives.ReadUInt32BigEndian(bytes[16..]))
            throw Damaged(channel, "CRC32C mismatch in a frame header: the data was damaged in transit");
        byte type = bytes[0], flags = bytes[1];
        bool noPayloadCrc = flags == NetFrame.FlagNoPayloadCrc && type == (byte)NetFrameType.Data && !sealedFrames;
        if (type is < (byte)NetFrameType.Data or > (byte)NetFrameType.Bye || (flags != 0 && !noPayloadCrc) || bytes[2] != 0 || bytes[3] != 0)
            throw Damaged(channel, $"corrupted frame header (type {type}, flags {flags}): the data was damaged in transit");
        uint length = BinaryPrimitives.ReadUInt32BigEndian(bytes[4..]);
        if (length > NetProtocol.MaxFramePayload)
            throw Damaged(channel, $"frame length {length} exceeds the limit of {NetProtocol.MaxFramePayload} bytes: the data was damaged in transit or the peer misbehaves");
        header = new NetFrameHeader((NetFrameType)type, noPayloadCrc, (int)length, BinaryPrimitives.ReadUInt64BigEndian(bytes[8..]));
        return true;
    }

    /// <summary>Writes this header, its CRC32C included, into the first <see cref="NetProtocol.FrameHeaderSize"/> bytes of <paramref name="destination"/>.</summary>
    public void WriteTo(Span<byte> destination)
    {
        destination[0] = (byte)Type;
        destination[1] = NoPayloadCrc ? NetFrame.FlagNoPayloadCrc : (byte)0;
        BinaryPrimitives.WriteUInt16BigEndian(destination[2..], 0);
        BinaryPrimitives.WriteUInt32BigEndian(destination[4..], (uint)PayloadLength);
        BinaryPrimitives.WriteUInt64BigEndian(destination[8..], Sequence);
        BinaryPrimitives.WriteUInt32BigEndian(destination[16..], Crc32C.Compute(destination[..16]));
    }

    private static VfioException Damaged(string channel, string detail) => new(Errno.EBADMSG, $"read frame on {channel}", detail);
}
