namespace Vfio.Engine;

/// <summary>A progress snapshot of one side of a migration.</summary>
public sealed record MigrationProgress
{
    /// <summary>Which side reports.</summary>
    public MigrationSide Side { get; init; }

    /// <summary>The current phase.</summary>
    public MigrationPhase Phase { get; init; }

    /// <summary>The current pre-copy round (0 before pre-copy).</summary>
    public int Round { get; init; }

    /// <summary>Device bytes moved in pre-copy so far.</summary>
    public long PreCopyBytes { get; init; }

    /// <summary>Device bytes moved in stop-copy so far.</summary>
    public long StopCopyBytes { get; init; }

    /// <summary>All device bytes moved so far.</summary>
    public long TotalBytes => PreCopyBytes + StopCopyBytes;

    /// <summary>Measured bandwidth in bytes per second (0 until measured).</summary>
    public double BandwidthBytesPerSecond { get; init; }

    /// <summary>Bytes the switchover would still have to move (pre-copy only; 0 otherwise).</summary>
    public long PendingBytes { get; init; }

    /// <summary>The most that may be pending at switchover (bandwidth × downtime limit).</summary>
    public long ThresholdBytes { get; init; }

    /// <summary>Switchover-acks received / expected.</summary>
    public int AcksReceived { get; init; }

    /// <summary>Switchover-acks expected (the number of pre-copied devices).</summary>
    public int AcksExpected { get; init; }

    /// <summary>Time since the migration started.</summary>
    public TimeSpan Elapsed { get; init; }

    /// <summary>Plain words about what just happened, if anything.</summary>
    public string? Message { get; init; }
}
