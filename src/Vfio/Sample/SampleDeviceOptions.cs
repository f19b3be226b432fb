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

    /// <summary>Deliberate protocol violations, for the conformance checker's own tests.</summary>
    public SampleDeviceFaults Faults { get; init; }
}
