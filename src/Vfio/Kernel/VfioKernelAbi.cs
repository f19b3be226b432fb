using System.Runtime.InteropServices;

namespace Vfio.Kernel;

// Blittable copies of the include/uapi/linux/vfio.h structs that only the kernel backend passes to
// ioctls (the migration structs live in Vfio.Uapi). Layouts are checked by tests against the header.

/// <summary>
/// <c>struct vfio_group_status</c> (8 bytes): argsz u32 @0, flags u32 @4.
/// </summary>
[StructLayout(LayoutKind.Sequential)]
internal struct VfioGroupStatusAbi
{
    public const int Size = 8;
    /// <summary>VFIO_GROUP_FLAGS_VIABLE: every device of the group is bound to a vfio driver.</summary>
    public const uint FlagViable = 1u << 0;
    /// <summary>VFIO_GROUP_FLAGS_CONTAINER_SET.</summary>
    public const uint FlagContainerSet = 1u << 1;

    public uint Argsz;
    public uint Flags;
}

/// <summary>
/// <c>struct vfio_device_info</c> up to <c>cap_offset</c> (20 bytes in the Linux 6.1 header; newer headers
/// add a u32 pad, which the kernel does not require): argsz @0, flags @4, num_regions @8, num_irqs @12,
/// cap_offset @16, all u32.
/// </summary>
[StructLayout(LayoutKind.Sequential)]
internal struct VfioDeviceInfoAbi
{
    public const int Size = 20;

    public uint Argsz;
    public uint Flags;
    public uint NumRegions;
    public uint NumIrqs;
    public uint CapOffset;
}

/// <summary>
/// <c>struct vfio_region_info</c> (32 bytes): argsz u32 @0, flags u32 @4, index u32 @8, cap_offset u32 @12,
/// size u64 @16, offset u64 @24.
/// </summary>
[StructLayout(LayoutKind.Sequential)]
internal struct VfioRegionInfoAbi
{
    public const int Size = 32;

    public uint Argsz;
    public uint Flags;
    public uint Index;
    public uint CapOffset;
    public ulong RegionSize;
    public ulong Offset;
}

/// <summary>What VFIO_DEVICE_GET_INFO reports.</summary>
/// <param name="Flags">VFIO_DEVICE_FLAGS_* (RESET 0x1, PCI 0x2, PLATFORM 0x4, …, CAPS 0x80).</param>
/// <param name="NumRegions">Highest region index + 1.</param>
/// <param name="NumIrqs">Highest IRQ index + 1.</param>
public readonly record struct KernelDeviceInfo(uint Flags, uint NumRegions, uint NumIrqs)
{
    /// <summary>VFIO_DEVICE_FLAGS_RESET.</summary>
    public const uint FlagReset = 1u << 0;
    /// <summary>VFIO_DEVICE_FLAGS_PCI.</summary>
    public const uint FlagPci = 1u << 1;
    /// <summary>VFIO_DEVICE_FLAGS_PLATFORM.</summary>
    public const uint FlagPlatform = 1u << 2;

    /// <summary>True when the device supports VFIO_DEVICE_RESET.</summary>
    public bool SupportsReset => (Flags & FlagReset) != 0;
}

/// <summary>What VFIO_DEVICE_GET_REGION_INFO reports for one region index.</summary>
/// <param name="Index">The region index.</param>
/// <param name="Flags">VFIO_REGION_INFO_FLAG_* (READ 0x1, WRITE 0x2, MMAP 0x4, CAPS 0x8).</param>
/// <param name="Size">Region size in bytes (0 = the region does not exist).</param>
/// <param name="Offset">Where the region starts in the device fd (for pread/pwrite).</param>
public readonly record struct KernelRegionInfo(uint Index, uint Flags, ulong Size, ulong Offset)
{
    /// <summary>VFIO_REGION_INFO_FLAG_READ.</summary>
    public const uint FlagRead = 1u << 0;
    /// <summary>VFIO_REGION_INFO_FLAG_WRITE.</summary>
    public const uint FlagWrite = 1u << 1;
    /// <summary>VFIO_REGION_INFO_FLAG_MMAP.</summary>
    public const uint FlagMmap = 1u << 2;

    /// <summary>READ/WRITE/MMAP as letters, e.g. <c>rw-</c>.</summary>
    public string Access => string.Concat(
        (Flags & FlagRead) != 0 ? "r" : "-",
        (Flags & FlagWrite) != 0 ? "w" : "-",
        (Flags & FlagMmap) != 0 ? "m" : "-");
}
