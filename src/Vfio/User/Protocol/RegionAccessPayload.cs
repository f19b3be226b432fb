using System.Buffers.Binary;

namespace Vfio.User.Protocol;

/// <summary>REGION_READ/REGION_WRITE head (16 bytes): u64 offset, u32 region, u32 count (spec §6.8).</summary>
internal readonly record struct RegionAccessPayload(ulong Offset, uint Region, uint Count)
{
    /// <summary>Head size.</summary>
    public const int Length = 16;

    /// <summary>Writes the head.</summary>
    public void Encode(Span<byte> b)
    {
        BinaryPrimitives.WriteUInt64LittleEndian(b, Offset);
        BinaryPrimitives.WriteUInt32LittleEndian(b[8..], Region);
        BinaryPrimitives.WriteUInt32LittleEndian(b[12..], Count);
    }

    /// <summary>Decodes; EINVAL when short.</summary>
    public static RegionAccessPayload Decode(ReadOnlySpan<byte> p, string op)
    {
        if (p.Length < Length)
            VfioException.Throw(Errno.EINVAL, op, $"payload of {p.Length} bytes is shorter than {Length}");
        return new(BinaryPrimitives.ReadUInt64LittleEndian(p), BinaryPrimitives.ReadUInt32LittleEndian(p[8..]), BinaryPrimitives.ReadUInt32LittleEndian(p[12..]));
    }
}

/// <summary>DMA_READ/DMA_WRITE head (16 bytes, libvfio-user layout): u64 addr, u64 count (spec §6.9).</summary>
internal readonly record struct DmaAccessPayload(ulong Address, ulong Count)
{
    /// <summary>Head size.</summary>
    public const int Length = 16;

    /// <summary>Writes the head.</summary>
    public void Encode(Span<byte> b)
    {
        BinaryPrimitives.WriteUInt64LittleEndian(b, Address);
        BinaryPrimitives.WriteUInt64LittleEndian(b[8..], Count);
    }

    /// <summary>Decodes; EINVAL when short.</summary>
    public static DmaAccessPayload Decode(ReadOnlySpan<byte> p, string op)
    {
        if (p.Length < Length)
            VfioException.Throw(Errno.EINVAL, op, $"payload of {p.Length} bytes is shorter than {Length}");
        return new(BinaryPrimitives.ReadUInt64LittleEndian(p), BinaryPrimitives.ReadUInt64LittleEndian(p[8..]));
    }
}

/// <summary>MIG_DATA_READ/WRITE head (8 bytes): u32 argsz, u32 size (spec §6.13).</summary>
internal readonly record struct MigDataPayload(uint Argsz, uint Size)
{
    /// <summary>Head size.</summary>
    public const int Length = 8;

    /// <summary>Writes the head.</summary>
    public void Encode(Span<byte> b)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(b, Argsz);
        BinaryPrimitives.WriteUInt32LittleEndian(b[4..], Size);
    }

    /// <summary>Decodes; EINVAL when short.</summary>
    public static MigDataPayload Decode(ReadOnlySpan<byte> p, string op)
    {
        if (p.Length < Length)
            VfioException.Throw(Errno.EINVAL, op, $"payload of {p.Length} bytes is shorter than {Length}");
        return new(BinaryPrimitives.ReadUInt32LittleEndian(p), BinaryPrimitives.ReadUInt32LittleEndian(p[4..]));
    }
}
