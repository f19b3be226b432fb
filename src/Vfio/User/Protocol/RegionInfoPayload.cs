using System.Buffers.Binary;

namespace Vfio.User.Protocol;

/// <summary>DEVICE_GET_REGION_INFO (32 bytes): argsz, flags, index, cap_offset, size, offset (spec §6.4).</summary>
public readonly record struct RegionInfoPayload(uint Argsz, uint Flags, uint Index, uint CapOffset, ulong Size, ulong Offset)
{
    /// <summary>Payload size.</summary>
    public const int Length = 32;
    /// <summary>Readable.</summary>
    public const uint FlagRead = 0x1;
    /// <summary>Writable.</summary>
    public const uint FlagWrite = 0x2;
    /// <summary>Mmappable through the region fd.</summary>
    public const uint FlagMmap = 0x4;
    /// <summary>A capability chain follows.</summary>
    public const uint FlagCaps = 0x8;

    /// <summary>Encodes.</summary>
    public byte[] Encode()
    {
        var b = new byte[Length];
        BinaryPrimitives.WriteUInt32LittleEndian(b, Argsz);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(4), Flags);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(8), Index);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(12), CapOffset);
        BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(16), Size);
        BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(24), Offset);
        return b;
    }

    /// <summary>Decodes; EINVAL when short.</summary>
    public static RegionInfoPayload Decode(ReadOnlySpan<byte> p)
    {
        if (p.Length < Length)
            VfioException.Throw(Errno.EINVAL, "DEVICE_GET_REGION_INFO", $"payload of {p.Length} bytes is shorter than {Length}");
        return new(BinaryPrimitives.ReadUInt32LittleEndian(p), BinaryPrimitives.ReadUInt32LittleEndian(p[4..]),
            BinaryPrimitives.ReadUInt32LittleEndian(p[8..]), BinaryPrimitives.ReadUInt32LittleEndian(p[12..]),
            BinaryPrimitives.ReadUInt64LittleEndian(p[16..]), BinaryPrimitives.ReadUInt64LittleEndian(p[24..]));
    }
}
