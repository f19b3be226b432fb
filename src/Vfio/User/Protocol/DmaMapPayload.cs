using System.Buffers.Binary;

namespace Vfio.User.Protocol;

/// <summary>DMA_MAP request (32 bytes): argsz, flags, offset, addr, size (spec §6.1).</summary>
internal readonly record struct DmaMapPayload(uint Argsz, uint Flags, ulong Offset, ulong Address, ulong Size)
{
    /// <summary>Payload size.</summary>
    public const int Length = 32;
    /// <summary>READ permission.</summary>
    public const uint FlagRead = 0x1;
    /// <summary>WRITE permission.</summary>
    public const uint FlagWrite = 0x2;
    /// <summary>libvfio-user extension: the fd must be mmapped.</summary>
    public const uint FlagMmap = 0x4;
    /// <summary>libvfio-user extension: access with pread/pwrite.</summary>
    public const uint FlagFileIo = 0x8;
    /// <summary>Every defined flag bit.</summary>
    public const uint KnownFlags = 0xF;

    /// <summary>Encodes.</summary>
    public byte[] Encode()
    {
        var b = new byte[Length];
        BinaryPrimitives.WriteUInt32LittleEndian(b, Argsz);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(4), Flags);
        BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(8), Offset);
        BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(16), Address);
        BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(24), Size);
        return b;
    }

    /// <summary>Decodes; EINVAL when short or argsz &lt; 32.</summary>
    public static DmaMapPayload Decode(ReadOnlySpan<byte> p)
    {
        if (p.Length < Length)
            VfioException.Throw(Errno.EINVAL, "DMA_MAP", $"payload of {p.Length} bytes is shorter than {Length}");
        var r = new DmaMapPayload(BinaryPrimitives.ReadUInt32LittleEndian(p), BinaryPrimitives.ReadUInt32LittleEndian(p[4..]),
            BinaryPrimitives.ReadUInt64LittleEndian(p[8..]), BinaryPrimitives.ReadUInt64LittleEndian(p[16..]), BinaryPrimitives.ReadUInt64LittleEndian(p[24..]));
        if (r.Argsz < Length)
            VfioException.Throw(Errno.EINVAL, "DMA_MAP", $"argsz {r.Argsz} is smaller than {Length}");
        return r;
    }
}
