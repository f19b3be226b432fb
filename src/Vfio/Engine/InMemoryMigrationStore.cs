using System.Collections.Concurrent;

namespace Vfio.Engine;

/// <summary>
/// A <see cref="IMigrationDecisionStore"/> in memory: the engine's default, for tests and library use. It does not
/// survive the process; the CLI uses <c>Vfio.Records.FileMigrationStore</c>.
/// </summary>
public sealed class InMemoryMigrationStore : IMigrationDecisionStore
{
    private readonly ConcurrentDictionary<(Guid, MigrationSide), MigrationRecord> _records = new();
    private readonly ConcurrentDictionary<Guid, MigrationDecisionRecord> _decisions = new();

    /// <inheritdoc/>
    public ValueTask WriteRecordAsync(MigrationRecord record, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(record);
        _records[(record.Id, record.Side)] = record;
        return ValueTask.CompletedTask;
    }

    /// <inheritdoc/>
    public ValueTask<MigrationRecord?> ReadRecordAsync(Guid id, MigrationSide side, CancellationToken cancellationToken = default)
        => ValueTask.FromResult(_records.TryGetValue((id, side), out var r) ? r : null);

    /// <inheritdoc/>
    public ValueTask<IReadOnlyList<MigrationRecord>> ListRecordsAsync(CancellationToken cancellationToken = default)
        => ValueTask.FromResult<IReadOnlyList<MigrationRecord>>([.. _records.Values]);

    /// <inheritdoc/>
    public ValueTask<MigrationDecisionRecord> DecideAsync(MigrationDecisionRecord decision, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(decision);
        return ValueTask.FromResult(_decisions.GetOrAdd(decision.Id, decision));
    }

    /// <inheritdoc/>
    /// <remarks>Nothing is kept ahead: the decision is made, with the publish time, when it is published.</remarks>
    public ValueTask<IPreparedDecision> PrepareDecisionAsync(MigrationDecisionRecord decision, CancellationToken cancellationToken = default)
        => ValueTask.FromResult<IPreparedDecision>(new DeferredDecision(decision, DecideAsync));

    /// <inheritdoc/>
    public ValueTask<MigrationDecisionRecord?> ReadDecisionAsync(Guid id, CancellationToken cancellationToken = default)
        => ValueTask.FromResult(_decisions.TryGetValue(id, out var d) ? d : null);
}
