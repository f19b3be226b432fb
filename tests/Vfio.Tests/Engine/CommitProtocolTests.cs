using Vfio.TestSupport;
using Vfio.Uapi;
using Vfio.Device;
using Vfio.Engine;
using Vfio.Migration;

namespace Vfio.Tests.Engine;

/// <summary>
/// The commit protocol (docs/commit-protocol.md) under faults: the link between the halves is cut (FIN, RST) or
/// stalled at every checkpoint, in either or both directions. After each trial: never both running (watched at
/// every transition), no state lost, and a held end resolves with one call to exactly one running copy with the
/// source's digest.
/// </summary>
public class CommitProtocolTests
{
    private const VfioMigrationFlags Caps7 = VfioMigrationFlags.StopCopy | VfioMigrationFlags.P2P | VfioMigrationFlags.PreCopy;

    public enum Direction
    {
        Forward,
        Return,
        Both,
    }

    public static TheoryData<MigrationCheckpoint, Direction, CutMode> Faults()
    {
        var data = new TheoryData<MigrationCheckpoint, Direction, CutMode>();
        foreach (var point in new[] { MigrationCheckpoint.PreCopy, MigrationCheckpoint.StopCopy, MigrationCheckpoint.Loaded, MigrationCheckpoint.Committed, MigrationCheckpoint.Started })
        {
            foreach (var direction in new[] { Direction.Forward, Direction.Return, Direction.Both })
            {
                data.Add(point, direction, CutMode.Fin);
                data.Add(point, direction, CutMode.Reset);
            }
            // Stalls before the stream ends are the transport's to detect (its idle timeout); from the load on,
            // the engine's own CommitTimeout bounds every wait.
            if (point is not (MigrationCheckpoint.PreCopy or MigrationCheckpoint.StopCopy))
            {
                data.Add(point, Direction.Return, CutMode.Stall);
                data.Add(point, Direction.Forward, CutMode.Stall);
            }
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(Faults))]
    public async Task LinkFailsAtACheckpoint_NeverBothRun_NothingLost_HeldEndsResolveToOneCopy(MigrationCheckpoint point, Direction direction, CutMode mode)
    {
        const int n = 2;
        await using var devices = new EngineTestDevices(n, Caps7);
        var ledger = new LiveCopyLedger(n);
        var sources = devices.Sources.Select((d, i) => (IVfioMigrationDevice)new LedgerDevice(d, ledger, i, source: true)).ToList();
        var destinations = devices.Destinations.Select((d, i) => (IVfioMigrationDevice)new LedgerDevice(d, ledger, i, source: false)).ToList();
        var before = devices.SourceDevices.Select(d => d.ComputeSha256()).ToList();
        var store = new InMemoryMigrationStore();
        var id = Guid.NewGuid();
        await using var link = new CuttableLink();
        var options = MigrationOptions.Default with
        {
            MigrationId = id,
            DecisionStore = store,
            CommitTimeout = TimeSpan.FromSeconds(3),
            FailureNoticeTimeout = TimeSpan.FromSeconds(1),
            Checkpoint = (p, _) =>
            {
                if (p == point)
                {
                    if (direction is Direction.Forward or Direction.Both)
                        link.CutForward(mode);
                    if (direction is Direction.Return or Direction.Both)
                        link.CutReturn(mode);
                }
                return ValueTask.CompletedTask;
            },
        };
        var ct = TestContext.Current.CancellationToken;
        var destinationTask = Task.Run(() => new MigrationDestination(destinations, options).RunAsync(link.DestinationInput, link.DestinationReturnPath, null, ct), ct);
        var sourceTask = Task.Run(() => new MigrationSource(sources, options).RunAsync(link.SourceOutput, link.SourceReturnPath, null, ct), ct);
        var sourceOutcome = await Outcome(sourceTask);
        var destinationOutcome = await Outcome(destinationTask);

        Assert.Empty(ledger.Violations);
        bool held = sourceOutcome is MigrationException { Held: true } || destinationOutcome is MigrationException { Held: true };
        bool sourcesRun = devices.SourceDevices.All(d => d.State == VfioMigrationState.Running);
        bool destinationsRun = devices.DestinationDevices.All(d => d.State == VfioMigrationState.Running) && destinationOutcome is null;
        if (held)
        {
            Assert.False(sourcesRun, "a held migration must not leave the sources running");
            var resolution = await MigrationResolver.ResolveAsync(id, store, sources, destinations, cancellationToken: ct);
            Assert.True(resolution.Ok, string.Join("; ", resolution.Devices.Select(d => d.Action)));
            Assert.Empty(ledger.Violations);
            sourcesRun = devices.SourceDevices.All(d => d.State == VfioMigrationState.Running);
            destinationsRun = devices.DestinationDevices.All(d => d.State == VfioMigrationState.Running) && resolution.Decision == MigrationDecision.Committed;
            // Resolving twice changes nothing.
            var again = await MigrationResolver.ResolveAsync(id, store, sources, destinations, cancellationToken: ct);
            Assert.Equal(resolution.Decision, again.Decision);
        }

        Assert.True(sourcesRun ^ destinationsRun, $"exactly one copy must run (sources running {sourcesRun}, destinations running {destinationsRun}; source: {sourceOutcome?.Message}; destination: {destinationOutcome?.Message})");
        for (int i = 0; i < n; i++)
        {
            var copy = sourcesRun ? devices.SourceDevices[i] : devices.DestinationDevices[i];
            Assert.Equal(before[i], copy.ComputeSha256());
        }
        var decision = await store.ReadDecisionAsync(id, ct);
        Assert.NotNull(decision);
        Assert.Equal(destinationsRun ? MigrationDecision.Committed : MigrationDecision.Aborted, decision.Decision);
        if (point == MigrationCheckpoint.Started)
            Assert.True(destinationsRun, "a cut after the destination reported its devices running changes nothing");
    }

    [Fact]
    public async Task Commit_AfterResolveDecidedAborted_IsRefusedAndTheSourceRunsAgain()
    {
        await using var devices = new EngineTestDevices(1, Caps7);
        var store = new InMemoryMigrationStore();
        var id = Guid.NewGuid();
        var before = devices.SourceDevices[0].ComputeSha256();
        // While the loaded destination waits for the Commit, an operator resolves on the destination host.
        var options = MigrationOptions.Default with
        {
            MigrationId = id,
            DecisionStore = store,
            Checkpoint = async (p, ct) =>
            {
                if (p == MigrationCheckpoint.Loaded)
                    await MigrationResolver.ResolveAsync(id, store, null, [], cancellationToken: ct);
            },
        };
        var destination = new FaultyDevice(devices.Destinations[0]);
        var ex = await Assert.ThrowsAsync<MigrationException>(() => MigrationEngine.MigrateAsync(devices.Sources, [destination], options, null, TestContext.Current.CancellationToken));

        Assert.False(ex.Held);
        Assert.True(destination.Resets >= 1, "the destination that refused the Commit was not reset");
        Assert.Equal(Errno.ECANCELED, ex.Errno);
        Assert.Contains("already decided aborted", ex.Message, StringComparison.Ordinal);
        Assert.Equal(VfioMigrationState.Running, devices.SourceDevices[0].State);
        Assert.Equal(before, devices.SourceDevices[0].ComputeSha256());
        Assert.Equal(MigrationDecision.Aborted, (await store.ReadDecisionAsync(id, TestContext.Current.CancellationToken))!.Decision);
    }

    [Theory]
    [InlineData(VfioMigrationState.RunningP2P)]
    [InlineData(VfioMigrationState.Running)]
    public async Task DestinationFailsToStartAfterCommit_IsHeldNotReset_AndResolveStartsIt(VfioMigrationState failing)
    {
        const int n = 2;
        await using var devices = new EngineTestDevices(n, Caps7);
        var ledger = new LiveCopyLedger(n);
        var store = new InMemoryMigrationStore();
        var before = devices.SourceDevices.Select(d => d.ComputeSha256()).ToList();
        var sources = devices.Sources.Select((d, i) => (IVfioMigrationDevice)new LedgerDevice(d, ledger, i, true)).ToList();
        var faulty = new FaultyDevice(devices.Destinations[1]) { FailSetStateTo = failing, FailOnce = true };
        var destinations = new List<IVfioMigrationDevice> { new LedgerDevice(devices.Destinations[0], ledger, 0, false), new LedgerDevice(faulty, ledger, 1, false) };

        var ex = await Assert.ThrowsAsync<MigrationException>(() => MigrationEngine.MigrateAsync(sources, destinations, MigrationOptions.Default with { DecisionStore = store }, null, TestContext.Current.CancellationToken));

        Assert.True(ex.Held, ex.Message);
        Assert.Equal(MigrationSide.Destination, ex.Side);
        Assert.Equal(MigrationPhase.Start, ex.Phase);
        Assert.Contains("vfio-mig resolve " + ex.MigrationId, ex.Message, StringComparison.Ordinal);
        Assert.Empty(ledger.Violations);
        // The source learned the commit (Committed frame): it is stopped for good; the destination was not reset.
        Assert.All(devices.SourceDevices, d => Assert.Equal(VfioMigrationState.Stop, d.State));
        for (int i = 0; i < n; i++)
            Assert.Equal(before[i], devices.DestinationDevices[i].ComputeSha256());

        var resolution = await MigrationResolver.ResolveAsync(ex.MigrationId, store, sources, destinations, cancellationToken: TestContext.Current.CancellationToken);
        Assert.True(resolution.Ok, string.Join("; ", resolution.Devices.Select(d => d.Action)));
        Assert.Equal(MigrationDecision.Committed, resolution.Decision);
        Assert.Empty(ledger.Violations);
        Assert.All(devices.DestinationDevices, d => Assert.Equal(VfioMigrationState.Running, d.State));
        Assert.All(devices.SourceDevices, d => Assert.Equal(VfioMigrationState.Stop, d.State));
        for (int i = 0; i < n; i++)
            Assert.Equal(before[i], devices.DestinationDevices[i].ComputeSha256());
    }

    [Theory]
    [InlineData(VfioMigrationState.Resuming)]
    [InlineData(VfioMigrationState.Stop)]
    public async Task DestinationLeftMidMigration_IsResetFirstWithALogLine(VfioMigrationState left)
    {
        await using var devices = new EngineTestDevices(1, Caps7);
        var ct = TestContext.Current.CancellationToken;
        var stream = await devices.Destinations[0].SetStateAsync(left, ct);
        if (stream is not null)
            await stream.DisposeAsync();
        using var logs = new RecordingLoggerFactory();

        await MigrationEngine.MigrateAsync(devices.Sources, devices.Destinations, MigrationOptions.Default with { LoggerFactory = logs }, null, ct);

        Assert.Contains(logs.Entries, e => e.EventId == 108 && e.Message.Contains($"was in {MigrationStateMachine.Name(left)}: reset before the migration", StringComparison.Ordinal));
        Assert.Equal(devices.SourceDevices[0].ComputeSha256(), devices.DestinationDevices[0].ComputeSha256());
        Assert.Equal(VfioMigrationState.Running, devices.DestinationDevices[0].State);
    }

    [Fact]
    public async Task DestinationHoldingACommittedState_IsRefusedWithTheResolveCommand()
    {
        await using var first = new EngineTestDevices(1, Caps7);
        var store = new InMemoryMigrationStore();
        var ct = TestContext.Current.CancellationToken;
        var faulty = new FaultyDevice(first.Destinations[0]) { FailSetStateTo = VfioMigrationState.Running, FailOnce = true };
        var held = await Assert.ThrowsAsync<MigrationException>(() => MigrationEngine.MigrateAsync(first.Sources, [faulty], MigrationOptions.Default with { DecisionStore = store }, null, ct));
        Assert.True(held.Held);
        var loaded = first.DestinationDevices[0].ComputeSha256();

        // A second migration into the same (held) destination must not reset it.
        await using var second = new EngineTestDevices(1, Caps7);
        var ex = await Assert.ThrowsAsync<MigrationException>(() => MigrationEngine.MigrateAsync(second.Sources, first.Destinations, MigrationOptions.Default with { DecisionStore = store }, null, ct));

        Assert.Equal(Errno.EBUSY, ex.Errno);
        Assert.Contains($"vfio-mig resolve {held.MigrationId}", ex.Message, StringComparison.Ordinal);
        Assert.Equal(loaded, first.DestinationDevices[0].ComputeSha256());
        Assert.Equal(VfioMigrationState.Running, second.SourceDevices[0].State);
    }

    [Fact]
    public async Task Recover_HeldSourceOfAnAbortedMigration_RunsAgain_AndRefusesACommittedOne()
    {
        await using var devices = new EngineTestDevices(1, Caps7);
        var ct = TestContext.Current.CancellationToken;
        var store = new InMemoryMigrationStore();
        var id = Guid.NewGuid();
        var before = devices.SourceDevices[0].ComputeSha256();
        // A source left in STOP_COPY by a controller that died after sending everything.
        await store.WriteRecordAsync(new MigrationRecord(id, MigrationSide.Source, [devices.Sources[0].Name], MigrationRecordStatus.Begun, "", DateTimeOffset.UtcNow), ct);
        await using (await devices.Sources[0].SetStateAsync(VfioMigrationState.StopCopy, ct))
        {
        }

        var undecided = await Assert.ThrowsAsync<VfioException>(() => MigrationResolver.RecoverAsync(devices.Sources[0], store, force: false, ct));
        Assert.Equal(Errno.EBUSY, undecided.Errno);
        Assert.Equal(VfioMigrationState.StopCopy, devices.SourceDevices[0].State);

        await store.DecideAsync(new MigrationDecisionRecord(id, MigrationDecision.Aborted, "copied", "test", DateTimeOffset.UtcNow), ct);
        var recovered = await MigrationResolver.RecoverAsync(devices.Sources[0], store, force: false, ct);
        Assert.True(recovered.Ok);
        Assert.Equal(VfioMigrationState.Running, devices.SourceDevices[0].State);
        Assert.Equal(before, devices.SourceDevices[0].ComputeSha256());
        Assert.Equal(MigrationRecordStatus.Aborted, (await store.ReadRecordAsync(id, MigrationSide.Source, ct))!.Status);

        var committedId = Guid.NewGuid();
        await store.WriteRecordAsync(new MigrationRecord(committedId, MigrationSide.Source, [devices.Sources[0].Name], MigrationRecordStatus.Held, "", DateTimeOffset.UtcNow), ct);
        await store.DecideAsync(new MigrationDecisionRecord(committedId, MigrationDecision.Committed, "copied", "test", DateTimeOffset.UtcNow), ct);
        await using (await devices.Sources[0].SetStateAsync(VfioMigrationState.StopCopy, ct))
        {
        }
        var refused = await Assert.ThrowsAsync<VfioException>(() => MigrationResolver.RecoverAsync(devices.Sources[0], store, force: true, ct));
        Assert.Equal(Errno.EBUSY, refused.Errno);
        Assert.Equal(VfioMigrationState.StopCopy, devices.SourceDevices[0].State);
    }

    [Fact]
    public async Task Resolve_OnTheSourceHostWithoutADecision_RefusesToGuess()
    {
        await using var devices = new EngineTestDevices(1, Caps7);
        var store = new InMemoryMigrationStore();
        var ex = await Assert.ThrowsAsync<VfioException>(() => MigrationResolver.ResolveAsync(Guid.NewGuid(), store, devices.Sources, null, cancellationToken: TestContext.Current.CancellationToken));
        Assert.Equal(Errno.ENOENT, ex.Errno);
        Assert.Contains("on the destination host", ex.Message, StringComparison.Ordinal);
    }

    private static async Task<Exception?> Outcome(Task task)
    {
        try
        {
            await task.WaitAsync(TimeSpan.FromSeconds(60), TestContext.Current.CancellationToken);
            return null;
        }
        catch (Exception e) when (e is not TimeoutException)
        {
            return e;
        }
    }
}
