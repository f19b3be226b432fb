using System.Buffers.Binary;

namespace Vfio.User.Protocol;

/// <summary>DEVICE_GET_INFO (16 bytes): argsz, flags, num_regions, num_irqs (spec §6.3).</summary>
public readonly record struct DeviceInfoPayload(uint Argsz, uint Flags, uint NumRegions, uint NumIrqs)
{
    /// <summary>Payload size.</summary>
    public const int Length = 16;
    /// <summary>VFIO_DEVICE_FLAGS_RESET.</summary>
    public const uint FlagReset = 0x1;
    /// <summary>VFIO_DEVICE_FLAGS_PCI.</summary>
    public const uint FlagPci = 0x2;

    /// <summary>Encodes.</summary>
    public byte[] Encode() => Codec.U32x4(Argsz, Flags, NumRegions, NumIrqs);

    /// <summary>Decodes; EINVAL when short.</summary>
    public static DeviceInfoPayload Decode(ReadOnlySpan<byte> p, string op = "DEVICE_GET_INFO")
    {
        var (a, b, c, d) = Codec.ReadU32x4(p, op);
        return new(a, b, c, d);
    }
}

/// <summary>DEVICE_GET_IRQ_INFO (16 bytes): argsz, flags, index, count (spec §6.6).</summary>
public readonly record struct IrqInfoPayload(uint Argsz, uint Flags, uint Index, uint Count)
{
    /// <summary>Payload size.</summary>
    public const int Length = 16;
    /// <summary>VFIO_IRQ_INFO_EVENTFD.</summary>
    public const uint FlagEventFd = 0x1;

    /// <summary>Encodes.</summary>
    public byte[] Encode() => Codec.U32x4(Argsz, Flags, Index, Count);

    /// <summary>Decodes; EINVAL when short.</summary>
    public static IrqInfoPayload Decode(ReadOnlySpan<byte> p)
    {
        var (a, b, c, d) = Codec.ReadU32x4(p, "DEVICE_GET_IRQ_INFO");
        return new(a, b, c, d);
    }
}

/// <summary>Small shared codec helpers.</summary>
internal static class Codec
{
    public static byte[] U32x4(uint a, uint b, uint c, uint d)
    {
        var buf = new byte[16];
        BinaryPrimitives.WriteUInt32LittleEndian(buf, a);
        BinaryPrimitives.WriteUInt32LittleEndian(buf.AsSpan(4), b);
        BinaryPrimitives.WriteUInt32LittleEndian(buf.AsSpan(8), c);
        BinaryPrimitives.WriteUInt32LittleEndian(buf.AsSpan(12), d);
        return buf;
    }

    public static (uint, uint, uint, uint) ReadU32x4(ReadOnlySpan<byte> p, string op)
    {
        if (p.Length < 16)
            VfioException.Throw(Errno.EINVAL, op, $"payload of {p.Length} bytes is shorter than 16");
        return (BinaryPrimitives.ReadUInt32LittleEndian(p), BinaryPrimitives.ReadUInt32LittleEndian(p[4..]),
            BinaryPrimitives.ReadUInt32LittleEndian(p[8..]), BinaryPrimitives.ReadUInt32LittleEndian(p[12..]));
    }
}
