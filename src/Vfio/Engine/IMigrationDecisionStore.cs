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

    /// <summary>
    /// Writes <paramref name="decision"/> ahead, durably but not yet as a decision, so that
    /// <see cref="IPreparedDecision.PublishAsync"/> later only has to make it the decision
    /// (docs/commit-protocol.md, "Preparing the decision"). Until it is published nothing is decided: a crash leaves
    /// no decision. The decision on record carries the time it was published, not <paramref name="decision"/>'s
    /// <see cref="MigrationDecisionRecord.DecidedUtc"/>. The default writes nothing ahead: publishing calls
    /// <see cref="DecideAsync"/>.
    /// </summary>
    ValueTask<IPreparedDecision> PrepareDecisionAsync(MigrationDecisionRecord decision, CancellationToken cancellationToken = default)
        => ValueTask.FromResult<IPreparedDecision>(new DeferredDecision(decision, DecideAsync));
}

/// <summary>
/// A decision written ahead by <see cref="IMigrationDecisionStore.PrepareDecisionAsync"/>: published once, or
/// disposed unpublished (which leaves no trace of it).
/// </summary>
public interface IPreparedDecision : IAsyncDisposable
{
    /// <summary>The decision this publishes.</summary>
    MigrationDecisionRecord Decision { get; }

    /// <summary>
    /// Makes the prepared decision the decision unless one exists, durably and atomically with respect to every
    /// other caller, as <see cref="IMigrationDecisionStore.DecideAsync"/> does. Returns the decision on record
    /// afterwards: this one (with the time it was published), or the earlier one. A second call returns the same.
    /// </summary>
    ValueTask<MigrationDecisionRecord> PublishAsync(CancellationToken cancellationToken = default);
}

/// <summary>
/// A prepared decision that holds nothing on disk: publishing it decides then, through <paramref name="decide"/>,
/// stamped with the publish time. The in-memory store's, and a store's that cannot write ahead.
/// </summary>
internal sealed class DeferredDecision(MigrationDecisionRecord decision, Func<MigrationDecisionRecord, CancellationToken, ValueTask<MigrationDecisionRecord>> decide) : IPreparedDecision
{
    private MigrationDecisionRecord? _published;
    private bool _disposed;

    public MigrationDecisionRecord Decision { get; } = decision ?? throw new ArgumentNullException(nameof(decision));

    public async ValueTask<MigrationDecisionRecord> PublishAsync(CancellationToken cancellationToken = default)
    {
        if (_published is not null)
            return _published;
        ObjectDisposedException.ThrowIf(_disposed, this);
        return _published = await decide(Decision with { DecidedUtc = DateTimeOffset.UtcNow }, cancellationToken).ConfigureAwait(false);
    }

    public ValueTask DisposeAsync()
    {
        _disposed = true;
        return ValueTask.CompletedTask;
    }
}
