using System.Globalization;
using Vfio.Migration;

namespace Vfio.Compat;

/// <summary>
/// Compares a source device's <see cref="MigrationProfile"/> with a destination device's and lists every reason the
/// migration would fail, before anything stops (docs/compatibility.md has the rules).
/// </summary>
public static class CompatibilityCheck
{
    /// <summary>
    /// Checks one pair. <paramref name="preCopy"/>: the source will pre-copy (the destination then needs PRE_COPY);
    /// <paramref name="deviceCount"/>: devices migrating together (more than one needs P2P on both sides).
    /// </summary>
    public static CompatibilityReport Check(MigrationProfile source, MigrationProfile destination, bool preCopy, int deviceCount = 1)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(destination);
        var reasons = new List<CompatibilityFinding>();
        var notes = new List<CompatibilityFinding>();
        CheckCapabilities(source, destination, preCopy, deviceCount, reasons);
        CheckIdentity(source.Identity, destination.Identity, reasons, notes);
        CheckRegions(source, destination, reasons, notes);
        CheckFormat(source, destination, reasons, notes);
        return new CompatibilityReport { Source = source, Destination = destination, Reasons = reasons, Notes = notes };
    }

    private static void CheckCapabilities(MigrationProfile s, MigrationProfile d, bool preCopy, int deviceCount, List<CompatibilityFinding> reasons)
    {
        string caps = $"(source caps {MigrationStateMachine.FormatCaps(s.Capabilities)}, destination caps {MigrationStateMachine.FormatCaps(d.Capabilities)})";
        if ((s.Capabilities & VfioMigrationFlags.StopCopy) == 0)
            reasons.Add(new("caps.stop_copy", $"the source device cannot migrate: it lacks STOP_COPY {caps}"));
        if ((d.Capabilities & VfioMigrationFlags.StopCopy) == 0)
            reasons.Add(new("caps.stop_copy", $"the destination device cannot migrate: it lacks STOP_COPY {caps}"));
        if (preCopy && (d.Capabilities & VfioMigrationFlags.PreCopy) == 0)
            reasons.Add(new("caps.pre_copy", $"the source will pre-copy, but the destination lacks PRE_COPY {caps}; migrating without pre-copy would work"));
        if (deviceCount > 1 && (s.Capabilities & d.Capabilities & VfioMigrationFlags.P2P) == 0)
            reasons.Add(new("caps.p2p", $"{deviceCount} devices migrate together, which needs P2P on both sides {caps}"));
    }

    private static void CheckIdentity(DeviceIdentity s, DeviceIdentity d, List<CompatibilityFinding> reasons, List<CompatibilityFinding> notes)
    {
        if (s.HasPciIds && d.HasPciIds)
        {
            if (s.VendorId != d.VendorId || s.DeviceId != d.DeviceId)
                reasons.Add(new("pci.device", $"another PCI device: source {Ids(s.VendorId, s.DeviceId)}, destination {Ids(d.VendorId, d.DeviceId)}"));
            else if (s.SubsystemVendorId != d.SubsystemVendorId || s.SubsystemId != d.SubsystemId)
                reasons.Add(new("pci.subsystem", $"another board variant: source subsystem {Ids(s.SubsystemVendorId, s.SubsystemId)}, destination {Ids(d.SubsystemVendorId, d.SubsystemId)}"));
        }
        if (s.Driver is not null && d.Driver is not null)
        {
            if (s.Driver != d.Driver)
                reasons.Add(new("driver", $"another driver: source {s.Driver}, destination {d.Driver}"));
            else if (s.DriverVersion != d.DriverVersion)
                notes.Add(new("driver.version", $"driver {s.Driver} versions differ: source {s.DriverVersion ?? "unknown"}, destination {d.DriverVersion ?? "unknown"}; the device's own stream check decides"));
        }
        if (s.Model is not null && d.Model is not null && s.Model != d.Model)
            reasons.Add(new("model", $"another device model: source {s.Model}, destination {d.Model}"));
        if (s.Transport != d.Transport)
            notes.Add(new("transport", $"the source is a {s.Transport} device, the destination a {d.Transport} device"));
    }

    private static void CheckRegions(MigrationProfile s, MigrationProfile d, List<CompatibilityFinding> reasons, List<CompatibilityFinding> notes)
    {
        if (s.Regions.Count == 0 || d.Regions.Count == 0)
        {
            if (s.Regions.Count != d.Regions.Count)
                notes.Add(new("regions", $"only the {(s.Regions.Count == 0 ? "destination" : "source")} reports its region layout; it was not compared"));
            return;
        }
        var theirs = d.Regions.ToDictionary(r => r.Index);
        foreach (var r in s.Regions)
        {
            if (!theirs.Remove(r.Index, out var other))
                reasons.Add(new("regions", Invariant($"region {r.Index} ({r.Size} bytes) exists on the source only")));
            else if (r.Size != other.Size)
                reasons.Add(new("regions", Invariant($"region {r.Index} is {r.Size} bytes on the source, {other.Size} on the destination")));
            else if (((r.Flags ^ other.Flags) & AccessFlags) != 0)
                reasons.Add(new("regions", Invariant($"region {r.Index} access differs: source flags 0x{r.Flags:x}, destination 0x{other.Flags:x} (read 0x1, write 0x2)")));
            else if (r.Flags != other.Flags)
                notes.Add(new("regions", Invariant($"region {r.Index} flags differ beyond read/write (mmap, caps): source 0x{r.Flags:x}, destination 0x{other.Flags:x}")));
        }
        foreach (var r in theirs.Values.OrderBy(r => r.Index))
            reasons.Add(new("regions", Invariant($"region {r.Index} ({r.Size} bytes) exists on the destination only")));
    }

    private static void CheckFormat(MigrationProfile s, MigrationProfile d, List<CompatibilityFinding> reasons, List<CompatibilityFinding> notes)
    {
        if (s.Format is not { } sf || d.Format is not { } df)
        {
            string who = s.Format is null && d.Format is null ? "neither device describes" : s.Format is null ? "the source does not describe" : "the destination does not describe";
            notes.Add(new("format", $"{who} its data format; the destination device checks the stream itself while loading"));
            LimitStopCopy(s, d, reasons);
            return;
        }
        if (sf.Name != df.Name)
        {
            reasons.Add(new("format.name", $"another data format: source {sf.Name}, destination {df.Name}"));
            return;
        }
        if (sf.Version < df.MinVersion || sf.Version > df.Version)
            reasons.Add(new("format.version", Invariant($"{sf.Name} version {sf.Version} from the source; the destination reads versions {df.MinVersion} to {df.Version}")));
        ulong unknown = sf.Features & ~df.Features;
        if (unknown != 0)
            reasons.Add(new("format.features", Invariant($"the source may use feature bits 0x{unknown:x} the destination does not know (source 0x{sf.Features:x}, destination 0x{df.Features:x})")));
        foreach (var key in sf.Parameters.Keys.Union(df.Parameters.Keys).Order(StringComparer.Ordinal))
        {
            bool inS = sf.Parameters.TryGetValue(key, out ulong a), inD = df.Parameters.TryGetValue(key, out ulong b);
            if (!inS || !inD)
                reasons.Add(new("format.parameter", $"parameter {key} is defined on the {(inS ? "source" : "destination")} only"));
            else if (a != b)
                reasons.Add(new("format.parameter", Invariant($"{key} differs: source {a}, destination {b}")));
        }
        foreach (var (key, need) in sf.Limits.OrderBy(p => p.Key, StringComparer.Ordinal))
        {
            if (!df.Limits.TryGetValue(key, out ulong max))
                reasons.Add(new("format.limit", Invariant($"the source needs {key} {need}; the destination states no {key}")));
            else if (need > max)
                reasons.Add(new("format.limit", Invariant($"the source needs {key} {need}; the destination takes at most {max}")));
        }
        LimitStopCopy(s, d, reasons);
    }

    // A destination format may bound the state it takes: limit "stop_copy_bytes" against the source's MIG_DATA_SIZE.
    private static void LimitStopCopy(MigrationProfile s, MigrationProfile d, List<CompatibilityFinding> reasons)
    {
        if (s.StopCopySize is { } size && d.Format?.Limits.TryGetValue(StopCopyLimit, out ulong max) == true && size > max)
            reasons.Add(new("stop_copy_size", Invariant($"the source's stop-copy size is {size} bytes; the destination takes at most {max}")));
    }

    // VFIO_REGION_INFO_FLAG_READ | _WRITE: what the guest can do with the region. MMAP and CAPS are how the
    // transport serves it, which the guest does not see.
    private const uint AccessFlags = 0x3;

    /// <summary>The limit name a destination format uses to bound the source's MIG_DATA_SIZE.</summary>
    public const string StopCopyLimit = "stop_copy_bytes";

    private static string Ids(ushort? vendor, ushort? device) => $"{vendor:x4}:{device:x4}";

    private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);
}
