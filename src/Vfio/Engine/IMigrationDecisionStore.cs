namespace Vfio.Engine;

/// <summary>
/// Where the engine keeps what must survive a crash: each side's <see cref="MigrationRecord"/> and the write-once
/// <see cref="MigrationDecisionRecord"/> (docs/commit-protocol.md, "Records"). Implementations make every write
/// durable before returning. Failures are <see cref="VfioException"/>s.
/// </summary>
public interface IMigrationDecisionStore
{
    /// <summary>Writes (or replaces) one side's record, atomically and durably.</summary>
    ValueTask WriteRecordAsync(MigrationRecord record, CancellationToken cancellationToken = default);

    /// <summary>Reads one side's record; null when there is none.</summary>
    ValueTask<MigrationRecord?> ReadRecordAsync(Guid id, MigrationSide side, CancellationToken cancellationToken = default);

    /// <summary>Every side record in the store.</summary>
    ValueTask<IReadOnlyList<MigrationRecord>> ListRecordsAsync(CancellationToken cancellationToken = default);

    /// <summary>
    /// Records <paramref name="decision"/> unless a decision for its id exists; durably, and atomically with
    /// respect to every other caller. Returns the decision on record afterwards: this one, or the earlier one.
    /// </summary>
    ValueTask<MigrationDecisionRecord> DecideAsync(MigrationDecisionRecord decision, CancellationToken cancellationToken = default);

    /// <summary>Reads the decision; null when none was made.</summary>
    ValueTask<MigrationDecisionRecord?> ReadDecisionAsync(Guid id, CancellationToken cancellationToken = default);
}
