using Vfio.Migration;

namespace Vfio.Compat;

/// <summary>
/// What a destination needs to know about a device before any source device leaves RUNNING: who it is, what it
/// can do, how its regions are laid out, how much state it would move, and its own format description. Each side
/// reads its devices' profiles; <see cref="CompatibilityCheck"/> compares a source's with a destination's.
/// Travels as JSON (snake_case, <see cref="MigrationProfileJson"/>) in the migration stream's Profile frame.
/// </summary>
public sealed record MigrationProfile
{
    /// <summary>The device's name on its side, for messages.</summary>
    public string Name { get; init; } = "";

    /// <summary>Who the device is: transport, PCI ids, driver, server.</summary>
    public DeviceIdentity Identity { get; init; } = new();

    /// <summary>VFIO_DEVICE_FEATURE_MIGRATION flags.</summary>
    public VfioMigrationFlags Capabilities { get; init; }

    /// <summary>The regions (index, size, flags) where the transport reports them; empty otherwise.</summary>
    public IReadOnlyList<RegionProfile> Regions { get; init; } = [];

    /// <summary>MIG_DATA_SIZE when the profile was read; null when the device cannot say.</summary>
    public ulong? StopCopySize { get; init; }

    /// <summary>The device-defined format description; null when the device (or its transport) gives none.</summary>
    public DeviceFormat? Format { get; init; }
}

/// <summary>Who a device is. Fields a transport cannot know are null.</summary>
public sealed record DeviceIdentity
{
    /// <summary><c>in-process</c>, <c>kernel</c> or <c>vfio-user</c>.</summary>
    public string Transport { get; init; } = "unknown";

    /// <summary>The device model: the class of an in-process device, the mdev type, or null.</summary>
    public string? Model { get; init; }

    /// <summary>PCI vendor id.</summary>
    public ushort? VendorId { get; init; }

    /// <summary>PCI device id.</summary>
    public ushort? DeviceId { get; init; }

    /// <summary>PCI subsystem vendor id.</summary>
    public ushort? SubsystemVendorId { get; init; }

    /// <summary>PCI subsystem id.</summary>
    public ushort? SubsystemId { get; init; }

    /// <summary>Kernel devices: the bound driver's name (sysfs <c>driver</c> link).</summary>
    public string? Driver { get; init; }

    /// <summary>Kernel devices: <c>/sys/module/DRIVER/version</c>, else its <c>srcversion</c>.</summary>
    public string? DriverVersion { get; init; }

    /// <summary>vfio-user devices: what the server reported (protocol version and capabilities).</summary>
    public string? Server { get; init; }

    /// <summary>True when the vendor and device ids are known.</summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public bool HasPciIds => VendorId is not null && DeviceId is not null;
}

/// <summary>One region: VFIO region index, size in bytes, and its VFIO_REGION_INFO flags.</summary>
/// <param name="Index">The region index (0–5 BARs, 6 ROM, 7 CONFIG, 8 VGA on PCI).</param>
/// <param name="Size">Bytes.</param>
/// <param name="Flags">VFIO_REGION_INFO_FLAG_* (read, write, mmap, caps).</param>
public sealed record RegionProfile(uint Index, ulong Size, uint Flags);

/// <summary>
/// A device's own description of its migration data, provided by <see cref="Device.MigrationDevice.Format"/>.
/// A destination loads a source's stream when the names match, the source's version is within
/// [<see cref="MinVersion"/>, <see cref="Version"/>] of the destination, every feature bit the source may use is one
/// the destination knows, every parameter is equal and every limit of the source is at most the destination's.
/// </summary>
public sealed record DeviceFormat
{
    /// <summary>The format's name, e.g. <c>vfio-mig-sample</c>.</summary>
    public string Name { get; init; } = "";

    /// <summary>The version this device writes, and the newest it reads.</summary>
    public uint Version { get; init; }

    /// <summary>The oldest version this device reads.</summary>
    public uint MinVersion { get; init; }

    /// <summary>Feature bits: those a source's stream may use, those a destination can load.</summary>
    public ulong Features { get; init; }

    /// <summary>Values both sides must share exactly (e.g. page size, state size).</summary>
    public IReadOnlyDictionary<string, ulong> Parameters { get; init; } = new Dictionary<string, ulong>();

    /// <summary>Amounts: what the source needs, at most what the destination takes (e.g. queues, state bytes).</summary>
    public IReadOnlyDictionary<string, ulong> Limits { get; init; } = new Dictionary<string, ulong>();
}
