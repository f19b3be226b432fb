using Vfio.Engine;
using Vfio.Migration;

namespace Vfio.Tests.Engine;

/// <summary>
/// docs/commit-protocol.md: once the decision is durable, the destination starts its devices and sends Complete
/// before it writes its own <c>completed</c> record, so that record's writes stay outside the downtime the source
/// measures (the source's downtime ends when Complete arrives).
/// </summary>
public class CompleteOrderTests
{
    private const VfioMigrationFlags Caps7 = VfioMigrationFlags.StopCopy | VfioMigrationFlags.P2P | VfioMigrationFlags.PreCopy;

    [Fact(Timeout = 60000)]
    public async Task The_destination_sends_Complete_before_it_writes_its_completed_record()
    {
        await using var devices = new EngineTestDevices(1, Caps7);
        // The destination's completed record waits for the source's: the source writes its own only after Complete
        // has arrived, so with Complete sent after the record the wait would run out instead.
        var store = new OrderingStore(TimeSpan.FromSeconds(10));
        var options = MigrationOptions.Default with { DecisionStore = store };

        await MigrationEngine.MigrateAsync(devices.Sources, devices.Destinations, options, null, TestContext.Current.CancellationToken);

        Assert.True(store.DestinationRecordWaited, "the destination wrote no completed record");
        Assert.True(store.SourceCompletedFirst, "the destination's completed record was written before the source had its Complete");
        Assert.Equal(devices.SourceDevices[0].ComputeSha256(), devices.DestinationDevices[0].ComputeSha256());
    }

    private sealed class OrderingStore(TimeSpan wait) : IMigrationDecisionStore
    {
        private readonly InMemoryMigrationStore _inner = new();
        private readonly TaskCompletionSource _sourceCompleted = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public bool DestinationRecordWaited { get; private set; }

        public bool SourceCompletedFirst { get; private set; }

        public async ValueTask WriteRecordAsync(MigrationRecord record, CancellationToken cancellationToken = default)
        {
            if (record.Status == MigrationRecordStatus.Completed && record.Side == MigrationSide.Source)
                _sourceCompleted.TrySetResult();
            if (record.Status == MigrationRecordStatus.Completed && record.Side == MigrationSide.Destination)
            {
                DestinationRecordWaited = true;
                try
                {
                    await _sourceCompleted.Task.WaitAsync(wait, cancellationToken);
                    SourceCompletedFirst = true;
                }
                catch (TimeoutException)
                {
                    SourceCompletedFirst = false;
                }
            }
            await _inner.WriteRecordAsync(record, cancellationToken);
        }

        public ValueTask<MigrationRecord?> ReadRecordAsync(Guid id, MigrationSide side, CancellationToken cancellationToken = default)
            => _inner.ReadRecordAsync(id, side, cancellationToken);

        public ValueTask<IReadOnlyList<MigrationRecord>> ListRecordsAsync(CancellationToken cancellationToken = default)
            => _inner.ListRecordsAsync(cancellationToken);

        public ValueTask<MigrationDecisionRecord> DecideAsync(MigrationDecisionRecord decision, CancellationToken cancellationToken = default)
            => _inner.DecideAsync(decision, cancellationToken);

        public ValueTask<MigrationDecisionRecord?> ReadDecisionAsync(Guid id, CancellationToken cancellationToken = default)
            => _inner.ReadDecisionAsync(id, cancellationToken);
    }
}
