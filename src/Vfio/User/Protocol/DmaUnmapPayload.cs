using System.Buffers.Binary;

namespace Vfio.User.Protocol;

/// <summary>DMA_UNMAP request/reply head (24 bytes): argsz, flags, addr, size (spec §6.2).</summary>
internal readonly record struct DmaUnmapPayload(uint Argsz, uint Flags, ulong Address, ulong Size)
{
    /// <summary>Payload size.</summary>
    public const int Length = 24;
    /// <summary>Legacy GET_DIRTY_BITMAP.</summary>
    public const uint FlagGetDirtyBitmap = 0x1;
    /// <summary>Unmap everything.</summary>
    public const uint FlagAll = 0x2;

    /// <summary>Encodes.</summary>
    public byte[] Encode()
    {
        var b = new byte[Length];
        BinaryPrimitives.WriteUInt32LittleEndian(b, Argsz);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(4), Flags);
        BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(8), Address);
        BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(16), Size);
        return b;
    }

    /// <summary>Decodes; EINVAL when short.</summary>
    public static DmaUnmapPayload Decode(ReadOnlySpan<byte> p)
    {
        if (p.Length < Length)
            VfioException.Throw(Errno.EINVAL, "DMA_UNMAP", $"payload of {p.Length} bytes is shorter than {Length}");
        return new(BinaryPrimitives.ReadUInt32LittleEndian(p), BinaryPrimitives.ReadUInt32LittleEndian(p[4..]),
            BinaryPrimitives.ReadUInt64LittleEndian(p[8..]), BinaryPrimitives.ReadUInt64LittleEndian(p[16..]));
    }
}
