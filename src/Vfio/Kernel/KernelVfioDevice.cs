using System.Text;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Vfio.Interop;
using Vfio.Uapi;

namespace Vfio.Kernel;

/// <summary>
/// One VFIO device opened through the group/container API: <c>/dev/vfio/vfio</c> (container), the IOMMU
/// group <c>/dev/vfio/N</c>, and the device fd from VFIO_GROUP_GET_DEVICE_FD. Owns all three descriptors.
/// Gives device info, region info and region read/write (pread/pwrite at the region's offset), and runs
/// the device ioctls that <see cref="KernelMigrationDevice"/> needs.
/// </summary>
/// <remarks>Every failing call throws <see cref="VfioException"/> with the kernel's errno.</remarks>
public sealed class KernelVfioDevice : IDisposable
{
    private readonly SafeFdHandle _container;
    private readonly SafeFdHandle _group;
    private readonly SafeFdHandle _device;

    private KernelVfioDevice(KernelDeviceEntry entry, SafeFdHandle container, SafeFdHandle group, SafeFdHandle device, int iommuType, ILogger logger)
    {
        Entry = entry;
        Logger = logger;
        _container = container;
        _group = group;
        _device = device;
        IommuType = iommuType;
    }

    /// <summary>The sysfs entry the device was opened from.</summary>
    public KernelDeviceEntry Entry { get; }

    /// <summary>The sysfs name (mdev UUID or PCI BDF).</summary>
    public string Name => Entry.Name;

    /// <summary>The IOMMU model set on the container: 3 (VFIO_TYPE1v2_IOMMU) or 1 (VFIO_TYPE1_IOMMU).</summary>
    public int IommuType { get; }

    /// <summary>The device descriptor.</summary>
    internal SafeFdHandle DeviceHandle => _device;

    /// <summary>Where this device and its migration wrapper log.</summary>
    internal ILogger Logger { get; }

    /// <summary>
    /// Finds <paramref name="name"/> in sysfs and opens it through its group and a new container. Logs the opening,
    /// every SET and reset to <paramref name="loggerFactory"/> (default: no logging).
    /// </summary>
    public static KernelVfioDevice Open(string name, VfioHostPaths? paths = null, ILoggerFactory? loggerFactory = null)
    {
        paths ??= VfioHostPaths.Default;
        var logger = (loggerFactory ?? NullLoggerFactory.Instance).CreateLogger<KernelVfioDevice>();
        var entry = VfioSysfs.Find(name, paths);
        int groupNumber = entry.IommuGroup!.Value;

        SafeFdHandle? container = null, group = null, device = null;
        try
        {
            container = OpenFile(paths.Container, $"open vfio:{name}: container {paths.Container}", errno => errno switch
            {
                Errno.ENOENT => "the VFIO container device does not exist: load the vfio modules (modprobe -a vfio vfio_iommu_type1)",
                Errno.EACCES or Errno.EPERM => "no permission to open the VFIO container (run as root or fix the device node's permissions)",
                _ => null,
            });

            int version = IoctlValue(container, VfioIoctl.VFIO_GET_API_VERSION, 0, "VFIO_GET_API_VERSION");
            if (version != VfioIoctl.VFIO_API_VERSION)
                throw new VfioException(Errno.EINVAL, "VFIO_GET_API_VERSION", $"the kernel speaks VFIO API {version}, this library speaks {VfioIoctl.VFIO_API_VERSION}");

            bool v2 = IoctlValue(container, VfioIoctl.VFIO_CHECK_EXTENSION, (nuint)VfioIoctl.VFIO_TYPE1v2_IOMMU, "VFIO_CHECK_EXTENSION(TYPE1v2)") > 0;
            bool v1 = IoctlValue(container, VfioIoctl.VFIO_CHECK_EXTENSION, (nuint)VfioIoctl.VFIO_TYPE1_IOMMU, "VFIO_CHECK_EXTENSION(TYPE1)") > 0;
            if (!v2 && !v1)
                throw new VfioException(Errno.EOPNOTSUPP, "VFIO_CHECK_EXTENSION", "the container offers neither the type1v2 nor the type1 IOMMU model (load vfio_iommu_type1)");

            string groupPath = paths.Group(groupNumber);
            group = OpenFile(groupPath, $"open vfio:{name}: group {groupPath}", errno => errno switch
            {
                Errno.ENOENT => $"the group device of IOMMU group {groupNumber} does not exist: is the device bound to a vfio driver?",
                Errno.EBUSY => $"IOMMU group {groupNumber} is already open (by another process, or by another device object in this one)",
                Errno.EACCES or Errno.EPERM => "no permission to open the group device",
                _ => null,
            });

            var status = GetGroupStatus(group);
            if ((status.Flags & VfioGroupStatusAbi.FlagViable) == 0)
                throw new VfioException(Errno.EINVAL, "VFIO_GROUP_GET_STATUS",
                    $"IOMMU group {groupNumber} is not viable: every device in the group must be bound to a vfio driver (or unbound)");

            SetContainer(group, container);

            int iommuType = v2 ? VfioIoctl.VFIO_TYPE1v2_IOMMU : VfioIoctl.VFIO_TYPE1_IOMMU;
            if (!TrySetIommu(container, iommuType, out var errno))
            {
                if (iommuType == VfioIoctl.VFIO_TYPE1v2_IOMMU && v1 && TrySetIommu(container, VfioIoctl.VFIO_TYPE1_IOMMU, out _))
                    iommuType = VfioIoctl.VFIO_TYPE1_IOMMU;
                else
                    Interop.Interop.ThrowIo(errno, $"VFIO_SET_IOMMU({(iommuType == 3 ? "TYPE1v2" : "TYPE1")})");
            }

            device = GetDeviceFd(group, name);
            var opened = new KernelVfioDevice(entry, container, group, device, iommuType, logger);
            container = group = device = null;
            KernelLog.Opened(logger, name, groupNumber, iommuType, entry.Driver ?? "none");
            return opened;
        }
        finally
        {
            device?.Dispose();
            group?.Dispose();
            container?.Dispose();
        }
    }

    /// <summary>VFIO_DEVICE_GET_INFO.</summary>
    public KernelDeviceInfo GetInfo()
    {
        var info = new VfioDeviceInfoAbi { Argsz = VfioDeviceInfoAbi.Size };
        IoctlStruct(_device, VfioIoctl.VFIO_DEVICE_GET_INFO, ref info, "VFIO_DEVICE_GET_INFO");
        return new KernelDeviceInfo(info.Flags, info.NumRegions, info.NumIrqs);
    }

    /// <summary>VFIO_DEVICE_GET_REGION_INFO for one index (EINVAL from the kernel for an index it does not have).</summary>
    public KernelRegionInfo GetRegionInfo(uint index)
    {
        var info = new VfioRegionInfoAbi { Argsz = VfioRegionInfoAbi.Size, Index = index };
        IoctlStruct(_device, VfioIoctl.VFIO_DEVICE_GET_REGION_INFO, ref info, $"VFIO_DEVICE_GET_REGION_INFO({index})");
        return new KernelRegionInfo(index, info.Flags, info.RegionSize, info.Offset);
    }

    /// <summary>Every region index below num_regions that the kernel describes (indexes it rejects are left out).</summary>
    public IReadOnlyList<KernelRegionInfo> GetRegions()
    {
        var regions = new List<KernelRegionInfo>();
        uint count = GetInfo().NumRegions;
        for (uint i = 0; i < count; i++)
        {
            try
            {
                regions.Add(GetRegionInfo(i));
            }
            catch (VfioException e) when (e.Errno == Errno.EINVAL)
            {
                // PCI devices leave holes (e.g. no ROM or VGA region): the kernel answers EINVAL there.
            }
        }
        return regions;
    }

    /// <summary>Reads <paramref name="destination"/>.Length bytes of region <paramref name="index"/> at <paramref name="offset"/>.</summary>
    public void ReadRegion(uint index, ulong offset, Span<byte> destination)
    {
        var region = CheckRange(index, offset, destination.Length, KernelRegionInfo.FlagRead, "read");
        long fileOffset = checked((long)(region.Offset + offset));
        int done = 0;
        while (done < destination.Length)
        {
            long n = PRead(destination[done..], fileOffset + done);
            if (n < 0)
            {
                var errno = Interop.Interop.LastErrno;
                if (errno == Errno.EINTR)
                    continue;
                Interop.Interop.ThrowIo(errno, $"pread region {index} at 0x{offset + (ulong)done:x}");
            }
            if (n == 0)
                throw new VfioException(Errno.EIO, $"pread region {index} at 0x{offset + (ulong)done:x}", "the device returned end of file inside the region");
            done += (int)n;
        }
    }

    /// <summary>Writes <paramref name="source"/> to region <paramref name="index"/> at <paramref name="offset"/>.</summary>
    public void WriteRegion(uint index, ulong offset, ReadOnlySpan<byte> source)
    {
        var region = CheckRange(index, offset, source.Length, KernelRegionInfo.FlagWrite, "write");
        long fileOffset = checked((long)(region.Offset + offset));
        int done = 0;
        while (done < source.Length)
        {
            long n = PWrite(source[done..], fileOffset + done);
            if (n < 0)
            {
                var errno = Interop.Interop.LastErrno;
                if (errno == Errno.EINTR)
                    continue;
                Interop.Interop.ThrowIo(errno, $"pwrite region {index} at 0x{offset + (ulong)done:x}");
            }
            if (n == 0)
                throw new VfioException(Errno.EIO, $"pwrite region {index} at 0x{offset + (ulong)done:x}", "the device accepted no bytes");
            done += (int)n;
        }
    }

    /// <summary>VFIO_DEVICE_RESET.</summary>
    public void Reset()
    {
        KernelLog.Reset(Logger, "vfio:" + Name);
        Interop.Interop.CheckIo(Interop.Interop.Ioctl(_device, VfioIoctl.VFIO_DEVICE_RESET, 0), "VFIO_DEVICE_RESET",
            errno => errno == Errno.ENOTTY ? "the device does not support reset" : null);
    }

    /// <summary>
    /// VFIO_DEVICE_FEATURE with a complete call buffer (header + payload, <see cref="VfioFeatureCall"/>); the
    /// kernel writes results back into it. Returns 0, or the negated errno (no exception: callers decide).
    /// </summary>
    internal unsafe int Feature(Span<byte> call)
    {
        fixed (byte* p = call)
        {
            int rc = Interop.Interop.Ioctl(_device, VfioIoctl.VFIO_DEVICE_FEATURE, p);
            return rc < 0 ? -(int)Interop.Interop.LastErrno : rc;
        }
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        // Device first, then group (which leaves the container), then the container.
        _device.Dispose();
        _group.Dispose();
        _container.Dispose();
    }

    private KernelRegionInfo CheckRange(uint index, ulong offset, int length, uint needFlag, string what)
    {
        var region = GetRegionInfo(index);
        if ((region.Flags & needFlag) == 0)
            throw new VfioException(Errno.EINVAL, $"{what} region {index}", $"region {index} does not allow {what} (flags {region.Access})");
        if (offset > region.Size || (ulong)length > region.Size - offset)
            throw new ArgumentOutOfRangeException(nameof(offset), $"{length} bytes at 0x{offset:x} do not fit region {index} of {region.Size} bytes");
        return region;
    }

    private unsafe long PRead(Span<byte> destination, long fileOffset)
    {
        fixed (byte* p = destination)
            return Interop.Interop.PRead(_device, p, (nuint)destination.Length, fileOffset);
    }

    private unsafe long PWrite(ReadOnlySpan<byte> source, long fileOffset)
    {
        fixed (byte* p = source)
            return Interop.Interop.PWrite(_device, p, (nuint)source.Length, fileOffset);
    }

    private static SafeFdHandle OpenFile(string path, string operation, Func<Errno, string?> explain)
    {
        var handle = Interop.Interop.OpenHandle(path, Interop.Interop.O_RDWR | Interop.Interop.O_CLOEXEC);
        if (handle.IsInvalid)
        {
            var errno = Interop.Interop.LastErrno;
            handle.Dispose();
            Interop.Interop.ThrowIo(errno, operation, explain);
        }
        return handle;
    }

    private static int IoctlValue(SafeFdHandle fd, uint request, nuint arg, string operation)
        => (int)Interop.Interop.CheckIo(Interop.Interop.Ioctl(fd, request, arg), operation);

    private static unsafe void IoctlStruct<T>(SafeFdHandle fd, uint request, ref T value, string operation)
        where T : unmanaged
    {
        fixed (T* p = &value)
            Interop.Interop.CheckIo(Interop.Interop.Ioctl(fd, request, p), operation);
    }

    private static VfioGroupStatusAbi GetGroupStatus(SafeFdHandle group)
    {
        var status = new VfioGroupStatusAbi { Argsz = VfioGroupStatusAbi.Size };
        IoctlStruct(group, VfioIoctl.VFIO_GROUP_GET_STATUS, ref status, "VFIO_GROUP_GET_STATUS");
        return status;
    }

    private static unsafe void SetContainer(SafeFdHandle group, SafeFdHandle container)
    {
        bool added = false;
        container.DangerousAddRef(ref added);
        try
        {
            int fd = container.Fd;
            Interop.Interop.CheckIo(Interop.Interop.Ioctl(group, VfioIoctl.VFIO_GROUP_SET_CONTAINER, &fd), "VFIO_GROUP_SET_CONTAINER",
                errno => errno == Errno.EBUSY ? "the group already belongs to a container" : null);
        }
        finally
        {
            if (added)
                container.DangerousRelease();
        }
    }

    private static bool TrySetIommu(SafeFdHandle container, int type, out Errno errno)
    {
        int rc = Interop.Interop.Ioctl(container, VfioIoctl.VFIO_SET_IOMMU, (nuint)type);
        errno = rc < 0 ? Interop.Interop.LastErrno : Errno.None;
        return rc >= 0;
    }

    private static unsafe SafeFdHandle GetDeviceFd(SafeFdHandle group, string name)
    {
        int byteCount = Encoding.UTF8.GetByteCount(name);
        Span<byte> cname = byteCount < 256 ? stackalloc byte[byteCount + 1] : new byte[byteCount + 1];
        Encoding.UTF8.GetBytes(name, cname);
        cname[byteCount] = 0;
        int fd;
        fixed (byte* p = cname)
            fd = Interop.Interop.Ioctl(group, VfioIoctl.VFIO_GROUP_GET_DEVICE_FD, p);
        Interop.Interop.CheckIo(fd, $"VFIO_GROUP_GET_DEVICE_FD({name})", errno => errno switch
        {
            Errno.EBUSY => "the device is already open (VFIO allows one open per device through a group)",
            Errno.ENODEV => "the group has no device with this name",
            _ => null,
        });
        return new SafeFdHandle(fd, ownsHandle: true);
    }
}
