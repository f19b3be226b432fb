using System.Buffers.Binary;

namespace Vfio.Uapi;

// Byte-exact models of the migration structs of include/uapi/linux/vfio.h (spec §1.7).
// All fields little-endian; each type knows its size and encodes into / decodes from a span.

/// <summary><c>struct vfio_device_feature</c> header: argsz (u32) at 0, flags (u32) at 4, data[] at 8.</summary>
internal readonly record struct VfioDeviceFeature(uint Argsz, uint Flags)
{
    /// <summary>Size of the header.</summary>
    public const int Size = 8;

    /// <summary>The feature id (low 16 bits of <see cref="Flags"/>).</summary>
    public VfioDeviceFeatureId FeatureId => (VfioDeviceFeatureId)(Flags & (uint)VfioDeviceFeatureFlags.Mask);

    /// <summary>The GET/SET/PROBE bits.</summary>
    public VfioDeviceFeatureFlags Operations => (VfioDeviceFeatureFlags)Flags & ~VfioDeviceFeatureFlags.Mask;

    /// <summary>Writes the header.</summary>
    public void Encode(Span<byte> destination)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(destination, Argsz);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[4..], Flags);
    }

    /// <summary>Reads the header.</summary>
    public static VfioDeviceFeature Decode(ReadOnlySpan<byte> source)
        => new(BinaryPrimitives.ReadUInt32LittleEndian(source), BinaryPrimitives.ReadUInt32LittleEndian(source[4..]));
}

/// <summary><c>struct vfio_device_feature_migration</c>: u64 flags at 0 (8 bytes).</summary>
internal readonly record struct VfioDeviceFeatureMigration(ulong Flags)
{
    /// <summary>Size of the struct.</summary>
    public const int Size = 8;

    /// <summary>Writes the struct.</summary>
    public void Encode(Span<byte> destination) => BinaryPrimitives.WriteUInt64LittleEndian(destination, Flags);

    /// <summary>Reads the struct.</summary>
    public static VfioDeviceFeatureMigration Decode(ReadOnlySpan<byte> source) => new(BinaryPrimitives.ReadUInt64LittleEndian(source));
}

/// <summary><c>struct vfio_device_feature_mig_state</c>: u32 device_state at 0, s32 data_fd at 4 (8 bytes).</summary>
internal readonly record struct VfioDeviceFeatureMigState(uint DeviceState, int DataFd)
{
    /// <summary>Size of the struct.</summary>
    public const int Size = 8;

    /// <summary>Writes the struct.</summary>
    public void Encode(Span<byte> destination)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(destination, DeviceState);
        BinaryPrimitives.WriteInt32LittleEndian(destination[4..], DataFd);
    }

    /// <summary>Reads the struct.</summary>
    public static VfioDeviceFeatureMigState Decode(ReadOnlySpan<byte> source)
        => new(BinaryPrimitives.ReadUInt32LittleEndian(source), BinaryPrimitives.ReadInt32LittleEndian(source[4..]));
}

/// <summary><c>struct vfio_precopy_info</c>: argsz u32 @0, flags u32 @4, initial_bytes u64 @8, dirty_bytes u64 @16 (24 bytes).</summary>
public readonly record struct VfioPrecopyInfo(uint Argsz, uint Flags, ulong InitialBytes, ulong DirtyBytes)
{
    /// <summary>Size of the struct (the minimum argsz).</summary>
    public const int Size = 24;

    /// <summary>VFIO_PRECOPY_INFO_REINIT (Linux 7.1): new initial data appeared on the stream.</summary>
    public const uint FlagReinit = 0x1;

    /// <summary>Writes the struct.</summary>
    public void Encode(Span<byte> destination)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(destination, Argsz);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[4..], Flags);
        BinaryPrimitives.WriteUInt64LittleEndian(destination[8..], InitialBytes);
        BinaryPrimitives.WriteUInt64LittleEndian(destination[16..], DirtyBytes);
    }

    /// <summary>Reads the struct.</summary>
    public static VfioPrecopyInfo Decode(ReadOnlySpan<byte> source) => new(
        BinaryPrimitives.ReadUInt32LittleEndian(source),
        BinaryPrimitives.ReadUInt32LittleEndian(source[4..]),
        BinaryPrimitives.ReadUInt64LittleEndian(source[8..]),
        BinaryPrimitives.ReadUInt64LittleEndian(source[16..]));
}

/// <summary><c>struct vfio_device_feature_dma_logging_control</c>: page_size u64 @0, num_ranges u32 @8, __reserved u32 @12, ranges u64 @16 (24 bytes).</summary>
internal readonly record struct VfioDmaLoggingControl(ulong PageSize, uint NumRanges, uint Reserved, ulong Ranges)
{
    /// <summary>Size of the struct.</summary>
    public const int Size = 24;

    /// <summary>Writes the struct.</summary>
    public void Encode(Span<byte> destination)
    {
        BinaryPrimitives.WriteUInt64LittleEndian(destination, PageSize);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[8..], NumRanges);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[12..], Reserved);
        BinaryPrimitives.WriteUInt64LittleEndian(destination[16..], Ranges);
    }

    /// <summary>Reads the struct.</summary>
    public static VfioDmaLoggingControl Decode(ReadOnlySpan<byte> source) => new(
        BinaryPrimitives.ReadUInt64LittleEndian(source),
        BinaryPrimitives.ReadUInt32LittleEndian(source[8..]),
        BinaryPrimitives.ReadUInt32LittleEndian(source[12..]),
        BinaryPrimitives.ReadUInt64LittleEndian(source[16..]));
}

/// <summary><c>struct vfio_device_feature_dma_logging_range</c>: iova u64 @0, length u64 @8 (16 bytes).</summary>
public readonly record struct VfioDmaLoggingRange(ulong Iova, ulong Length)
{
    /// <summary>Size of the struct.</summary>
    public const int Size = 16;

    /// <summary>Writes the struct.</summary>
    public void Encode(Span<byte> destination)
    {
        BinaryPrimitives.WriteUInt64LittleEndian(destination, Iova);
        BinaryPrimitives.WriteUInt64LittleEndian(destination[8..], Length);
    }

    /// <summary>Reads the struct.</summary>
    public static VfioDmaLoggingRange Decode(ReadOnlySpan<byte> source)
        => new(BinaryPrimitives.ReadUInt64LittleEndian(source), BinaryPrimitives.ReadUInt64LittleEndian(source[8..]));
}

/// <summary><c>struct vfio_device_feature_dma_logging_report</c>: iova @0, length @8, page_size @16, bitmap @24, all u64 (32 bytes).</summary>
internal readonly record struct VfioDmaLoggingReport(ulong Iova, ulong Length, ulong PageSize, ulong Bitmap)
{
    /// <summary>Size of the struct.</summary>
    public const int Size = 32;

    /// <summary>Writes the struct.</summary>
    public void Encode(Span<byte> destination)
    {
        BinaryPrimitives.WriteUInt64LittleEndian(destination, Iova);
        BinaryPrimitives.WriteUInt64LittleEndian(destination[8..], Length);
        BinaryPrimitives.WriteUInt64LittleEndian(destination[16..], PageSize);
        BinaryPrimitives.WriteUInt64LittleEndian(destination[24..], Bitmap);
    }

    /// <summary>Reads the struct.</summary>
    public static VfioDmaLoggingReport Decode(ReadOnlySpan<byte> source) => new(
        BinaryPrimitives.ReadUInt64LittleEndian(source),
        BinaryPrimitives.ReadUInt64LittleEndian(source[8..]),
        BinaryPrimitives.ReadUInt64LittleEndian(source[16..]),
        BinaryPrimitives.ReadUInt64LittleEndian(source[24..]));

    /// <summary>Number of u64 bitmap words the kernel needs: ((length − 1) / page_size) / 64 + 1 (spec §5.3).</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="pageSize"/> is 0.</exception>
    public static ulong BitmapWords(ulong length, ulong pageSize)
    {
        ArgumentOutOfRangeException.ThrowIfZero(pageSize);
        return length == 0 ? 0 : ((length - 1) / pageSize / 64) + 1;
    }
}

/// <summary><c>struct vfio_device_feature_mig_data_size</c>: u64 stop_copy_length at 0 (8 bytes).</summary>
internal readonly record struct VfioDeviceFeatureMigDataSize(ulong StopCopyLength)
{
    /// <summary>Size of the struct.</summary>
    public const int Size = 8;

    /// <summary>Writes the struct.</summary>
    public void Encode(Span<byte> destination) => BinaryPrimitives.WriteUInt64LittleEndian(destination, StopCopyLength);

    /// <summary>Reads the struct.</summary>
    public static VfioDeviceFeatureMigDataSize Decode(ReadOnlySpan<byte> source) => new(BinaryPrimitives.ReadUInt64LittleEndian(source));
}
