using System.Collections.Concurrent;
using System.IO.Pipelines;
using Vfio.Cli;
using Vfio.Engine;
using Vfio.Migration;
using Vfio.Sample;
using Vfio.Stream;

namespace Vfio.Tests.Engine;

/// <summary>
/// The destination writes its decision committed ahead, before Ready lets the source stop, and publishes it only on
/// the source's Commit after every device loaded; without a Commit it discards it and decides aborted
/// (docs/commit-protocol.md, "Preparing the decision").
/// </summary>
public class PreparedCommitDecisionTests
{
    private const VfioMigrationFlags Caps7 = VfioMigrationFlags.StopCopy | VfioMigrationFlags.P2P | VfioMigrationFlags.PreCopy;

    [Fact]
    public async Task Destination_PreparesBeforeTheSourceStops_AndPublishesOnlyAfterEveryDeviceLoaded()
    {
        const int n = 2;
        await using var devices = new EngineTestDevices(n, Caps7);
        var store = new EventStore(new InMemoryMigrationStore(), () => string.Join(",", devices.DestinationDevices.Select(d => MigrationStateMachine.Name(d.State))));
        var options = MigrationOptions.Default with
        {
            DecisionStore = store,
            Checkpoint = (p, _) =>
            {
                store.Events.Enqueue(p.ToString());
                return ValueTask.CompletedTask;
            },
        };

        var stats = await MigrationEngine.MigrateAsync(devices.Sources, devices.Destinations, options, null, TestContext.Current.CancellationToken);

        var events = store.Events.ToList();
        Assert.Single(events, e => e.StartsWith("prepare", StringComparison.Ordinal));
        Assert.Single(events, e => e.StartsWith("publish", StringComparison.Ordinal));
        int At(string prefix) => events.FindIndex(e => e.StartsWith(prefix, StringComparison.Ordinal));
        Assert.True(At("prepare committed") < At(nameof(MigrationCheckpoint.StopCopy)), string.Join(" | ", events));
        Assert.True(At(nameof(MigrationCheckpoint.Loaded)) < At("publish"), string.Join(" | ", events));
        Assert.True(At("publish") < At("dispose"), string.Join(" | ", events));
        // Published while every destination device held its loaded state, none started.
        Assert.Equal("publish STOP,STOP", events[At("publish")]);
        Assert.Equal(MigrationDecision.Committed, (await store.ReadDecisionAsync(stats.MigrationId, TestContext.Current.CancellationToken))!.Decision);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task ReplayedStream_ThePreparedCommitIsPublishedOnlyWhenTheCommitFrameArrives_ElseDiscardedAndAborted(bool withCommit)
    {
        var ct = TestContext.Current.CancellationToken;
        byte[] captured;
        await using (var devices = new EngineTestDevices(1, Caps7, size: 64 << 10))
            captured = (await StreamCapture.MigrateAsync(devices.Sources, devices.Destinations)).Bytes;
        // The stream as the source sent it, or cut cleanly at the frame boundary before its Commit.
        var frames = await StreamCapture.DecodeAsync(captured);
        Assert.Equal(captured.Length, MigrationFrameCodec.PreambleSize + frames.Sum(f => MigrationFrameCodec.FrameSize(f.Length)));
        int commitAt = MigrationFrameCodec.PreambleSize + frames.TakeWhile(f => f.Type != MigrationFrameType.Commit).Sum(f => MigrationFrameCodec.FrameSize(f.Length));
        Assert.True(commitAt < captured.Length, "the captured stream has no Commit frame");
        var stream = withCommit ? captured : captured[..commitAt];

        using var device = new SampleDevice(new SampleDeviceOptions { SizeBytes = 64 << 10, Capabilities = Caps7, Seed = 77 });
        var store = new EventStore(new InMemoryMigrationStore(), () => MigrationStateMachine.Name(device.State));
        var back = new Pipe(new PipeOptions(pauseWriterThreshold: 0));
        var input = PipeReader.Create(new System.Buffers.ReadOnlySequence<byte>(stream));
        var run = new MigrationDestination([new InProcessMigrationDevice(device, "sample:dst")], MigrationOptions.Default with { DecisionStore = store })
            .RunAsync(input, back.Writer, null, ct).WaitAsync(TimeSpan.FromSeconds(30), ct);
        Exception? failure = withCommit ? null : await Assert.ThrowsAsync<MigrationException>(() => run);
        if (withCommit)
            await run;

        var events = store.Events.ToList();
        var decision = await store.Inner.ReadDecisionAsync(await ReadMigrationIdAsync(captured), ct);
        Assert.NotNull(decision);
        Assert.Single(events, e => e.StartsWith("prepare committed", StringComparison.Ordinal));
        Assert.Contains("dispose", events);
        if (withCommit)
        {
            Assert.Equal(["prepare committed", "publish STOP", "dispose"], events.Where(e => !e.StartsWith("decide", StringComparison.Ordinal)));
            Assert.Equal((MigrationDecision.Committed, "destination"), (decision.Decision, decision.DecidedBy));
            Assert.Equal(VfioMigrationState.Running, device.State);
        }
        else
        {
            Assert.DoesNotContain(events, e => e.StartsWith("publish", StringComparison.Ordinal));
            Assert.Equal(MigrationDecision.Aborted, decision.Decision);
            Assert.Equal(VfioMigrationState.Running, device.State);
            Assert.Null(device.CurrentSession);
            // The stream ended where the Commit should have come.
            var ended = Assert.IsType<MigrationException>(failure);
            Assert.Equal(Errno.EPIPE, ended.Errno);
            Assert.Contains("after its End frame and before the source's Commit", ended.Message, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task InMemoryStore_PreparedDecision_PublishedAfterACompetingDecision_ReturnsTheEarlierOne()
    {
        var ct = TestContext.Current.CancellationToken;
        var store = new InMemoryMigrationStore();
        var id = Guid.NewGuid();
        var prepared = await store.PrepareDecisionAsync(new MigrationDecisionRecord(id, MigrationDecision.Committed, "destination", "test", DateTimeOffset.UtcNow), ct);
        Assert.Null(await store.ReadDecisionAsync(id, ct));

        var earlier = await store.DecideAsync(new MigrationDecisionRecord(id, MigrationDecision.Aborted, "resolve", "test", DateTimeOffset.UtcNow), ct);
        var published = await prepared.PublishAsync(ct);
        await prepared.DisposeAsync();

        Assert.Equal(earlier, published);
        Assert.Equal(earlier, await store.ReadDecisionAsync(id, ct));
        Assert.Equal(earlier, await prepared.PublishAsync(ct));
    }

    [Fact]
    public async Task InMemoryStore_PreparedDecision_DisposedUnpublished_DecidesNothing()
    {
        var ct = TestContext.Current.CancellationToken;
        var store = new InMemoryMigrationStore();
        var id = Guid.NewGuid();
        var prepared = await store.PrepareDecisionAsync(new MigrationDecisionRecord(id, MigrationDecision.Committed, "destination", "test", DateTimeOffset.UtcNow), ct);
        await prepared.DisposeAsync();

        Assert.Null(await store.ReadDecisionAsync(id, ct));
        await Assert.ThrowsAsync<ObjectDisposedException>(async () => await prepared.PublishAsync(ct));
        Assert.Null(await store.ReadDecisionAsync(id, ct));
    }

    [Fact]
    public async Task CliWatchedStore_ForwardsPrepare_ToTheStoreItWraps()
    {
        var ct = TestContext.Current.CancellationToken;
        var inner = new EventStore(new InMemoryMigrationStore(), () => "");
        var watched = new WatchedMigrationStore(inner);
        await using var prepared = await watched.PrepareDecisionAsync(new MigrationDecisionRecord(Guid.NewGuid(), MigrationDecision.Committed, "destination", "test", DateTimeOffset.UtcNow), ct);
        await prepared.PublishAsync(ct);

        Assert.Equal(["prepare committed", "publish "], inner.Events.Where(e => !e.StartsWith("decide", StringComparison.Ordinal)));
    }

    // The id in the stream's Begin frame (its first).
    private static async Task<Guid> ReadMigrationIdAsync(byte[] stream)
    {
        var reader = new MigrationStreamReader(PipeReader.Create(new System.Buffers.ReadOnlySequence<byte>(stream)), MigrationStreamKind.Forward);
        await reader.ReadPreambleAsync(TestContext.Current.CancellationToken);
        var begin = await reader.ReadFrameAsync(TestContext.Current.CancellationToken);
        Assert.Equal(MigrationFrameType.Begin, begin?.Type);
        return MigrationFrameCodec.ReadMigrationId(begin!.Value.Payload);
    }

    // Logs what the engine asks of its store: prepare, publish (with the destination devices' states then), dispose.
    private sealed class EventStore(IMigrationDecisionStore inner, Func<string> states) : IMigrationDecisionStore
    {
        public ConcurrentQueue<string> Events { get; } = new();

        public IMigrationDecisionStore Inner => inner;

        public ValueTask WriteRecordAsync(MigrationRecord record, CancellationToken cancellationToken = default) => inner.WriteRecordAsync(record, cancellationToken);

        public ValueTask<MigrationRecord?> ReadRecordAsync(Guid id, MigrationSide side, CancellationToken cancellationToken = default) => inner.ReadRecordAsync(id, side, cancellationToken);

        public ValueTask<IReadOnlyList<MigrationRecord>> ListRecordsAsync(CancellationToken cancellationToken = default) => inner.ListRecordsAsync(cancellationToken);

        public ValueTask<MigrationDecisionRecord?> ReadDecisionAsync(Guid id, CancellationToken cancellationToken = default) => inner.ReadDecisionAsync(id, cancellationToken);

        public ValueTask<MigrationDecisionRecord> DecideAsync(MigrationDecisionRecord decision, CancellationToken cancellationToken = default)
        {
            Events.Enqueue("decide " + MigrationResolver.Name(decision.Decision));
            return inner.DecideAsync(decision, cancellationToken);
        }

        public async ValueTask<IPreparedDecision> PrepareDecisionAsync(MigrationDecisionRecord decision, CancellationToken cancellationToken = default)
        {
            Events.Enqueue("prepare " + MigrationResolver.Name(decision.Decision));
            return new Prepared(this, await inner.PrepareDecisionAsync(decision, cancellationToken));
        }

        private sealed class Prepared(EventStore store, IPreparedDecision inner) : IPreparedDecision
        {
            public MigrationDecisionRecord Decision => inner.Decision;

            public ValueTask<MigrationDecisionRecord> PublishAsync(CancellationToken cancellationToken = default)
            {
                store.Events.Enqueue("publish " + store.StatesNow());
                return inner.PublishAsync(cancellationToken);
            }

            public ValueTask DisposeAsync()
            {
                store.Events.Enqueue("dispose");
                return inner.DisposeAsync();
            }
        }

        private string StatesNow() => states();
    }
}
