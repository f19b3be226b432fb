namespace Vfio.Kernel;

/// <summary>
/// Where the kernel backend looks: the sysfs root and the /dev/vfio directory. Tests point these at a
/// temporary tree; everything else uses <see cref="Default"/>.
/// </summary>
public sealed record VfioHostPaths(string Sysfs, string DevVfio)
{
    /// <summary><c>/sys</c> and <c>/dev/vfio</c>.</summary>
    public static VfioHostPaths Default { get; } = new("/sys", "/dev/vfio");

    /// <summary>The container device, <c>/dev/vfio/vfio</c>.</summary>
    public string Container => Path.Combine(DevVfio, "vfio");

    /// <summary>The group device <c>/dev/vfio/N</c>.</summary>
    public string Group(int group) => Path.Combine(DevVfio, group.ToString(System.Globalization.CultureInfo.InvariantCulture));
}
