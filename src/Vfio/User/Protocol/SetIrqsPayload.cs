using System.Buffers.Binary;

namespace Vfio.User.Protocol;

/// <summary>DEVICE_SET_IRQS head (20 bytes): argsz, flags, index, start, count (spec §6.7).</summary>
internal readonly record struct SetIrqsPayload(uint Argsz, uint Flags, uint Index, uint Start, uint Count)
{
    /// <summary>Head size.</summary>
    public const int Length = 20;
    /// <summary>DATA_NONE.</summary>
    public const uint DataNone = 0x1;
    /// <summary>DATA_BOOL.</summary>
    public const uint DataBool = 0x2;
    /// <summary>DATA_EVENTFD.</summary>
    public const uint DataEventFd = 0x4;
    /// <summary>ACTION_MASK.</summary>
    public const uint ActionMask = 0x8;
    /// <summary>ACTION_UNMASK.</summary>
    public const uint ActionUnmask = 0x10;
    /// <summary>ACTION_TRIGGER.</summary>
    public const uint ActionTrigger = 0x20;
    /// <summary>All data-type bits.</summary>
    public const uint DataMask = 0x7;
    /// <summary>All action bits.</summary>
    public const uint ActionMaskBits = 0x38;

    /// <summary>Encodes the head (append bools yourself).</summary>
    public byte[] Encode()
    {
        var b = new byte[Length];
        BinaryPrimitives.WriteUInt32LittleEndian(b, Argsz);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(4), Flags);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(8), Index);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(12), Start);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(16), Count);
        return b;
    }

    /// <summary>Decodes; EINVAL when short.</summary>
    public static SetIrqsPayload Decode(ReadOnlySpan<byte> p)
    {
        if (p.Length < Length)
            VfioException.Throw(Errno.EINVAL, "DEVICE_SET_IRQS", $"payload of {p.Length} bytes is shorter than {Length}");
        return new(BinaryPrimitives.ReadUInt32LittleEndian(p), BinaryPrimitives.ReadUInt32LittleEndian(p[4..]),
            BinaryPrimitives.ReadUInt32LittleEndian(p[8..]), BinaryPrimitives.ReadUInt32LittleEndian(p[12..]), BinaryPrimitives.ReadUInt32LittleEndian(p[16..]));
    }
}
