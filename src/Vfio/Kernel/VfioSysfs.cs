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
