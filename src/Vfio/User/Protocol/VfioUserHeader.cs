using System.Buffers.Binary;

namespace Vfio.User.Protocol;

/// <summary>
/// The 16-byte message header (spec §3).
/// <code>
///  0      2      4          8          12         16
///  | id   | cmd  | msg_size | flags    | error_no |  payload …
/// </code>
/// </summary>
internal readonly record struct VfioUserHeader(ushort MessageId, VfioUserCommand Command, uint MessageSize, VfioUserMessageFlags Flags, uint ErrorNo)
{
    /// <summary>Header size in bytes.</summary>
    public const int Size = 16;

    /// <summary>True for type = reply.</summary>
    public bool IsReply => (Flags & VfioUserMessageFlags.TypeMask) == VfioUserMessageFlags.Reply;

    /// <summary>True for type = command.</summary>
    public bool IsCommand => (Flags & VfioUserMessageFlags.TypeMask) == VfioUserMessageFlags.Command;

    /// <summary>True when the ERROR bit is set.</summary>
    public bool IsError => (Flags & VfioUserMessageFlags.Error) != 0;

    /// <summary>True when the NO_REPLY bit is set.</summary>
    public bool NoReply => (Flags & VfioUserMessageFlags.NoReply) != 0;

    /// <summary>Payload length (msg_size − 16); only meaningful after <see cref="VfioUserFrame.ReadHeader"/> validated it.</summary>
    public int PayloadLength => (int)(MessageSize - Size);

    /// <summary>Writes the header.</summary>
    public void Encode(Span<byte> destination)
    {
        BinaryPrimitives.WriteUInt16LittleEndian(destination, MessageId);
        BinaryPrimitives.WriteUInt16LittleEndian(destination[2..], (ushort)Command);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[4..], MessageSize);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[8..], (uint)Flags);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[12..], ErrorNo);
    }

    /// <summary>Reads a header (no validation).</summary>
    public static VfioUserHeader Decode(ReadOnlySpan<byte> source)
    {
        if (source.Length < Size)
            throw new VfioUserProtocolException($"a header needs {Size} bytes, got {source.Length}");
        return new(
            BinaryPrimitives.ReadUInt16LittleEndian(source),
            (VfioUserCommand)BinaryPrimitives.ReadUInt16LittleEndian(source[2..]),
            BinaryPrimitives.ReadUInt32LittleEndian(source[4..]),
            (VfioUserMessageFlags)BinaryPrimitives.ReadUInt32LittleEndian(source[8..]),
            BinaryPrimitives.ReadUInt32LittleEndian(source[12..]));
    }
}
