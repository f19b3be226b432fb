using System.Globalization;
using System.Text;
using Vfio.Migration;

namespace Vfio.Kernel;

/// <summary>Everything <c>vfio-mig info vfio:NAME</c> shows about a kernel device.</summary>
/// <param name="Entry">The sysfs entry.</param>
/// <param name="IommuType">The container's IOMMU model (3 = type1v2, 1 = type1).</param>
/// <param name="Info">VFIO_DEVICE_GET_INFO.</param>
/// <param name="Regions">VFIO_DEVICE_GET_REGION_INFO for each index that exists.</param>
/// <param name="Capabilities">The migration flags, or null without migration.</param>
/// <param name="State">The current migration state, or null without migration.</param>
/// <param name="MigrationError">Why there are no capabilities, if so.</param>
public sealed record KernelDeviceReport(
    KernelDeviceEntry Entry,
    int IommuType,
    KernelDeviceInfo Info,
    IReadOnlyList<KernelRegionInfo> Regions,
    VfioMigrationFlags? Capabilities,
    VfioMigrationState? State,
    string? MigrationError)
{
    /// <summary>A plain-text rendering, one fact per line.</summary>
    public override string ToString()
    {
        var c = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        sb.Append(c, $"device:       vfio:{Entry.Name} ({Entry.Bus.ToString().ToLowerInvariant()}, driver {Entry.Driver ?? "none"}, iommu group {Entry.IommuGroup})\n");
        sb.Append(c, $"iommu:        {(IommuType == 3 ? "type1v2" : "type1")}\n");
        sb.Append(c, $"device info:  flags 0x{Info.Flags:x} ({(Info.SupportsReset ? "reset" : "no reset")}), {Info.NumRegions} regions, {Info.NumIrqs} irqs\n");
        foreach (var r in Regions)
            sb.Append(c, $"region {r.Index}:     size {r.Size} (0x{r.Size:x}) at offset 0x{r.Offset:x}, {r.Access}\n");
        if (Capabilities is { } caps)
        {
            sb.Append(c, $"migration:    caps {MigrationStateMachine.FormatCaps(caps)} ({caps})\n");
            sb.Append(c, $"state:        {(State is { } s ? MigrationStateMachine.Name(s) : "?")}\n");
        }
        else
        {
            sb.Append(c, $"migration:    {MigrationError}\n");
        }
        return sb.ToString();
    }
}
