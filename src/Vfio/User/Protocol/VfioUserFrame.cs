namespace Vfio.User.Protocol;

/// <summary>Header-level validation (the decoder): what a receiver checks before it reads or allocates a body.</summary>
internal static class VfioUserFrame
{
    /// <summary>
    /// Decodes a header and checks msg_size within [16, <paramref name="maxMessageSize"/>] — the only check that must
    /// happen before the body is read. A failure here means the stream cannot be trusted any more. Type and flag
    /// checks (<see cref="CheckFlags"/>) come after the body was consumed, so they can be answered without desync.
    /// </summary>
    /// <exception cref="VfioUserProtocolException">The header is unusable.</exception>
    public static VfioUserHeader ReadHeader(ReadOnlySpan<byte> source, int maxMessageSize = ProtocolLimits.MaxMessageBytes)
    {
        var header = VfioUserHeader.Decode(source);
        if (header.MessageSize < VfioUserHeader.Size)
            throw new VfioUserFramingException(header, $"msg_size {header.MessageSize} is smaller than the 16-byte header");
        if (header.MessageSize > (uint)maxMessageSize)
            throw new VfioUserFramingException(header, $"msg_size {header.MessageSize} exceeds the limit of {maxMessageSize} bytes");
        return header;
    }

    /// <summary>Why the flags of a complete message are unacceptable, or null when they are fine.</summary>
    public static string? CheckFlags(VfioUserHeader header)
    {
        var type = header.Flags & VfioUserMessageFlags.TypeMask;
        if (type is not (VfioUserMessageFlags.Command or VfioUserMessageFlags.Reply))
            return $"message type {(uint)type} is neither command (0) nor reply (1)";
        if ((header.Flags & ~VfioUserMessageFlags.Known) != 0)
            return $"reserved flag bits 0x{(uint)(header.Flags & ~VfioUserMessageFlags.Known):x} are set";
        return null;
    }

    /// <summary>
    /// Splits a buffer into one message: header + payload. Returns false when more bytes are needed.
    /// </summary>
    public static bool TryReadMessage(ReadOnlySpan<byte> buffer, out VfioUserHeader header, out int consumed, int maxMessageSize = ProtocolLimits.MaxMessageBytes)
    {
        header = default;
        consumed = 0;
        if (buffer.Length < VfioUserHeader.Size)
            return false;
        header = ReadHeader(buffer, maxMessageSize);
        if (buffer.Length < header.MessageSize)
            return false;
        consumed = (int)header.MessageSize;
        return true;
    }

    /// <summary>Builds a complete message: header + payload.</summary>
    public static byte[] Build(ushort id, VfioUserCommand command, VfioUserMessageFlags flags, ReadOnlySpan<byte> payload, uint errorNo = 0)
    {
        var buffer = new byte[VfioUserHeader.Size + payload.Length];
        new VfioUserHeader(id, command, (uint)buffer.Length, flags, errorNo).Encode(buffer);
        payload.CopyTo(buffer.AsSpan(VfioUserHeader.Size));
        return buffer;
    }
}
