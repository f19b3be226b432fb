namespace Vfio.Kernel;

/// <summary>The bus a VFIO device sits on.</summary>
public enum KernelDeviceBus
{
    /// <summary>A mediated device (<c>/sys/bus/mdev/devices/UUID</c>).</summary>
    Mdev,
    /// <summary>A PCI device bound to vfio-pci or a vfio-pci variant driver (<c>/sys/bus/pci/devices/BDF</c>).</summary>
    Pci,
}

/// <summary>One device found in sysfs.</summary>
/// <param name="Name">The sysfs name (mdev UUID or PCI BDF): what <c>vfio:NAME</c> and VFIO_GROUP_GET_DEVICE_FD take.</param>
/// <param name="Bus">mdev or PCI.</param>
/// <param name="SysfsPath">The device directory.</param>
/// <param name="IommuGroup">The IOMMU group number, or null when the device has none (not usable through VFIO).</param>
/// <param name="Driver">The bound driver's name, or null.</param>
public sealed record KernelDeviceEntry(string Name, KernelDeviceBus Bus, string SysfsPath, int? IommuGroup, string? Driver);
