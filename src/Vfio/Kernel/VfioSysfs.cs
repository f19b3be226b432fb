using System.Globalization;

namespace Vfio.Kernel;

/// <summary>Finds VFIO devices in sysfs: every mdev, and PCI devices bound to a vfio driver.</summary>
public static class VfioSysfs
{
    /// <summary>Every usable device, mdevs first, each list sorted by name.</summary>
    public static IReadOnlyList<KernelDeviceEntry> Discover(VfioHostPaths? paths = null)
    {
        paths ??= VfioHostPaths.Default;
        var found = new List<KernelDeviceEntry>();
        foreach (var dir in List(Path.Combine(paths.Sysfs, "bus", "mdev", "devices")))
            found.Add(Describe(dir, KernelDeviceBus.Mdev));
        foreach (var dir in List(Path.Combine(paths.Sysfs, "bus", "pci", "devices")))
        {
            var entry = Describe(dir, KernelDeviceBus.Pci);
            if (entry.Driver is not null && entry.Driver.Contains("vfio", StringComparison.Ordinal))
                found.Add(entry);
        }
        return found;
    }

    /// <summary>
    /// The device called <paramref name="name"/> (mdev UUID or PCI BDF). Throws <see cref="VfioException"/>
    /// ENOENT when sysfs has no such device, ENODEV when it has no IOMMU group.
    /// </summary>
    public static KernelDeviceEntry Find(string name, VfioHostPaths? paths = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        paths ??= VfioHostPaths.Default;
        if (name.Contains('/', StringComparison.Ordinal) || name is "." or "..")
            throw new VfioException(Errno.EINVAL, $"find vfio:{name}", "a device name is a sysfs name (mdev UUID or PCI address such as 0000:01:00.0), not a path");

        string mdev = Path.Combine(paths.Sysfs, "bus", "mdev", "devices", name);
        string pci = Path.Combine(paths.Sysfs, "bus", "pci", "devices", name);
        KernelDeviceEntry entry;
        if (Directory.Exists(mdev))
            entry = Describe(mdev, KernelDeviceBus.Mdev);
        else if (Directory.Exists(pci))
            entry = Describe(pci, KernelDeviceBus.Pci);
        else
            throw new VfioException(Errno.ENOENT, $"find vfio:{name}",
                $"no device named '{name}' under {Path.GetDirectoryName(mdev)} or {Path.GetDirectoryName(pci)}");

        if (entry.IommuGroup is null)
            throw new VfioException(Errno.ENODEV, $"find vfio:{name}",
                $"{entry.SysfsPath} has no iommu_group link: the device is not usable through VFIO (no IOMMU, or no vfio/mdev driver bound)");
        return entry;
    }

    /// <summary>
    /// Who the device is, from sysfs: PCI vendor/device/subsystem ids (PCI devices), the mdev type's name (mdevs),
    /// the bound driver and its module's <c>version</c> (else <c>srcversion</c>). Unreadable attributes stay null.
    /// </summary>
    public static Compat.DeviceIdentity Identity(KernelDeviceEntry entry)
    {
        ArgumentNullException.ThrowIfNull(entry);
        var identity = new Compat.DeviceIdentity
        {
            Transport = "kernel",
            Driver = entry.Driver,
            DriverVersion = Attribute(entry.SysfsPath, "driver/module/version") ?? Attribute(entry.SysfsPath, "driver/module/srcversion"),
        };
        if (entry.Bus == KernelDeviceBus.Mdev)
            return identity with { Model = Attribute(entry.SysfsPath, "mdev_type/name") ?? LinkName(Path.Combine(entry.SysfsPath, "mdev_type")) };
        return identity with
        {
            VendorId = HexAttribute(entry.SysfsPath, "vendor"),
            DeviceId = HexAttribute(entry.SysfsPath, "device"),
            SubsystemVendorId = HexAttribute(entry.SysfsPath, "subsystem_vendor"),
            SubsystemId = HexAttribute(entry.SysfsPath, "subsystem_device"),
        };
    }

    private static string? Attribute(string directory, string name)
    {
        try
        {
            string text = File.ReadAllText(Path.Combine(directory, name)).Trim();
            return text.Length == 0 ? null : text;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    private static ushort? HexAttribute(string directory, string name)
    {
        string? text = Attribute(directory, name);
        return text is not null && text.StartsWith("0x", StringComparison.OrdinalIgnoreCase)
            && ushort.TryParse(text.AsSpan(2), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out ushort value) ? value : null;
    }

    private static string? LinkName(string path)
    {
        try
        {
            return new FileInfo(path).LinkTarget is { } target ? Path.GetFileName(target.TrimEnd('/')) : null;
        }
        catch (IOException)
        {
            return null;
        }
    }

    /// <summary>The group number from an <c>iommu_group</c> symlink target such as <c>../../kernel/iommu_groups/12</c>.</summary>
    public static int? ParseGroupLink(string? linkTarget)
    {
        if (string.IsNullOrEmpty(linkTarget))
            return null;
        string last = Path.GetFileName(linkTarget.TrimEnd('/'));
        return int.TryParse(last, NumberStyles.None, CultureInfo.InvariantCulture, out int group) ? group : null;
    }

    private static KernelDeviceEntry Describe(string dir, KernelDeviceBus bus)
    {
        int? group = ParseGroupLink(LinkTarget(Path.Combine(dir, "iommu_group")));
        string? driver = LinkTarget(Path.Combine(dir, "driver")) is { } d ? Path.GetFileName(d.TrimEnd('/')) : null;
        return new KernelDeviceEntry(Path.GetFileName(dir), bus, dir, group, driver);
    }

    private static string? LinkTarget(string path)
    {
        try
        {
            return new FileInfo(path).LinkTarget;
        }
        catch (IOException)
        {
            return null;
        }
        catch (UnauthorizedAccessException)
        {
            return null;
        }
    }

    private static string[] List(string dir)
    {
        if (!Directory.Exists(dir))
            return [];
        var names = Directory.GetFileSystemEntries(dir);
        Array.Sort(names, StringComparer.Ordinal);
        return names;
    }
}
