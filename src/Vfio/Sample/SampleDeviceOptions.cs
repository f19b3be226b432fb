using Vfio.Migration;

namespace Vfio.Sample;

/// <summary>Settings of the built-in sample device.</summary>
public sealed record SampleDeviceOptions
{
    /// <summary>The defaults: 64 MiB of state, caps 0x7, no dirtying workload.</summary>
    public static SampleDeviceOptions Default { get; } = new();

    /// <summary>Size of the device state in bytes; a multiple of <see cref="PageSize"/>.</summary>
    public long SizeBytes { get; init; } = 64L << 20;

    /// <summary>Page size of the device's own dirty tracking and of DMA logging.</summary>
    public int PageSize { get; init; } = 4096;

    /// <summary>Migration capabilities: 0x1, 0x3, 0x5 or 0x7.</summary>
    public VfioMigrationFlags Capabilities { get; init; } = VfioMigrationFlags.StopCopy | VfioMigrationFlags.P2P | VfioMigrationFlags.PreCopy;

    /// <summary>Bytes per second the workload dirties while the device runs (0 = idle).</summary>
    public long DirtyRateBytesPerSecond { get; init; }

    /// <summary>Seed of the initial content and of the workload; two devices with one seed start identical.</summary>
    public int Seed { get; init; } = 1;

    /// <summary>
    /// Re-initialise once mid-pre-copy (0 = never): at the first PRECOPY_INFO after one that reported no initial
    /// bytes left, once at least this many pre-copy bytes were read, the device restarts its initial pass (as a
    /// device reconfigured mid-migration would) and that answer carries REINIT when the user opted in to
    /// precopy-info v2 (spec §4.7). The stream stays valid either way.
    /// </summary>
    public long ReinitAfterBytes { get; init; }

    /// <summary>Deliberate protocol violations, for the conformance checker's own tests.</summary>
    public SampleDeviceFaults Faults { get; init; }
}
