namespace Vfio.Conformance;

/// <summary>What <see cref="ConformanceChecker"/> runs and how.</summary>
public sealed record ConformanceOptions
{
    /// <summary>The groups to run (<see cref="ConformanceGroups.Selectable"/>); null or empty runs all. The probe always runs.</summary>
    public IReadOnlyCollection<string>? Groups { get; init; }

    /// <summary>Allows loading migration data into the device itself (overwrites its state); otherwise such checks use <see cref="Peer"/> or are skipped.</summary>
    public bool AllowDestructive { get; init; }

    /// <summary>A second, compatible instance to resume into (it is overwritten freely).</summary>
    public Vfio.Migration.IVfioMigrationDevice? Peer { get; init; }

    /// <summary>Turns warnings on passing rules (e.g. 0 instead of ENOMSG) into failures.</summary>
    public bool Strict { get; init; }

    /// <summary>
    /// The device's stream is a pure function of its state, so a re-save after resume must be byte-identical
    /// (true for the sample device). Otherwise the round trip checks that the re-saved stream resumes again.
    /// </summary>
    public bool DeterministicStreams { get; init; }

    /// <summary>
    /// Makes the device write to its DMA targets while logging is on (the checker cannot do that through the
    /// migration interface); without it <c>dirty.read-and-clear</c> may only be checked on an empty log.
    /// </summary>
    public Func<CancellationToken, ValueTask>? GenerateDeviceWrites { get; init; }

    /// <summary>The read buffer size for data streams.</summary>
    public int ChunkSize { get; init; } = 64 * 1024;

    /// <summary>Saved streams larger than this are not kept in memory (the checks that replay them are skipped).</summary>
    public long MaxStreamBytes { get; init; } = 512L << 20;
}
