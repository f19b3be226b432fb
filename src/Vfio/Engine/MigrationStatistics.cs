namespace Vfio.Engine;

/// <summary>The figures of a finished migration, from one side's point of view (the source's for <see cref="MigrationEngine.MigrateAsync"/>).</summary>
public sealed record MigrationStatistics
{
    /// <summary>The migration's id.</summary>
    public Guid MigrationId { get; init; }

    /// <summary>Which side measured.</summary>
    public MigrationSide Side { get; init; }

    /// <summary>Number of devices migrated.</summary>
    public int DeviceCount { get; init; }

    /// <summary>Whether the devices were pre-copied.</summary>
    public bool PreCopyUsed { get; init; }

    /// <summary>Whether the switchover quiesced devices through the P2P states.</summary>
    public bool P2PUsed { get; init; }

    /// <summary>Pre-copy rounds.</summary>
    public int Rounds { get; init; }

    /// <summary>Device bytes moved during pre-copy.</summary>
    public long PreCopyBytes { get; init; }

    /// <summary>Device bytes moved during stop-copy (inside the downtime).</summary>
    public long StopCopyBytes { get; init; }

    /// <summary>All device bytes moved.</summary>
    public long TotalBytes => PreCopyBytes + StopCopyBytes;

    /// <summary>Bytes of the forward stream, framing included.</summary>
    public long StreamBytes { get; init; }

    /// <summary>Measured pre-copy bandwidth (bytes/s; 0 without pre-copy).</summary>
    public double PreCopyBandwidthBytesPerSecond { get; init; }

    /// <summary>Stop-copy bandwidth (bytes/s).</summary>
    public double StopCopyBandwidthBytesPerSecond { get; init; }

    /// <summary>Bytes pending when the switchover was decided (pre-copy only).</summary>
    public long PendingBytesAtSwitchover { get; init; }

    /// <summary>True when the switchover was forced after pre-copy failed to converge.</summary>
    public bool ForcedSwitchover { get; init; }

    /// <summary>Setup time (probing, headers, destinations to RESUMING).</summary>
    public TimeSpan SetupTime { get; init; }

    /// <summary>Time in pre-copy.</summary>
    public TimeSpan PreCopyTime { get; init; }

    /// <summary>Time from the first source leaving RUNNING to the end of the stop-copy data.</summary>
    public TimeSpan StopCopyTime { get; init; }

    /// <summary>Time the destination took to validate and start its devices.</summary>
    public TimeSpan DestinationStartTime { get; init; }

    /// <summary>
    /// Downtime: from the first source device leaving RUNNING (P2P quiescing or stop) until the source
    /// learned that the last destination device is RUNNING (so it includes the return-path latency).
    /// </summary>
    public TimeSpan Downtime { get; init; }

    /// <summary>Total time of the migration.</summary>
    public TimeSpan TotalTime { get; init; }

    /// <summary>Per-device figures.</summary>
    public IReadOnlyList<DeviceMigrationStatistics> Devices { get; init; } = [];

    /// <summary>Problems that did not fail the migration (e.g. a source that would not go STOP_COPY→STOP after success).</summary>
    public IReadOnlyList<string> Warnings { get; init; } = [];
}
