using Vfio.Migration;

namespace Vfio.IntegrationTests;

/// <summary>
/// kill -9 of <c>migrate</c> (between two <c>serve</c> processes, <see cref="ServedPair"/>) at each checkpoint of the
/// commit protocol (docs/commit-protocol.md): never both running, nothing lost, one command (<c>resolve</c>) brings
/// the right copy back, and the next migration succeeds. About 10 s per trial.
/// </summary>
public sealed class MigrateKillTests
{
    private static TimeSpan Deadline => ServedPair.Deadline;

    [Theory]
    [InlineData("precopy", "aborted")]
    [InlineData("stopcopy", "aborted")]
    [InlineData("loaded", "aborted")]
    [InlineData("committed", "committed")]
    [InlineData("started", "committed")]
    public async Task Migrate_killed_at_each_phase_resolves_to_exactly_one_copy_and_the_next_migration_succeeds(string phase, string decision)
    {
        using var pair = await ServedPair.StartAsync();
        string state = pair.SourceState;
        string id = await MigrateAndKillAsync(pair, phase);
        await pair.AssertNeverBothAndNothingLostAsync();
        Assert.NotEqual(VfioMigrationState.Running, await ServedPair.StateAsync(pair.A));

        using (var resolve = await ServedPair.RunAsync(0, "resolve", id, "--state-dir", state))
            Assert.Contains($"migration {id}: {decision}", resolve.Output, StringComparison.Ordinal);
        bool committed = decision == "committed";
        await pair.AssertExactlyOneRunsAsync(committed);
        if (committed)
            Assert.Equal(VfioMigrationState.Stop, await ServedPair.StateAsync(pair.A));

        // Resolving again changes nothing.
        using (await ServedPair.RunAsync(0, "resolve", id, "--state-dir", state))
            await pair.AssertExactlyOneRunsAsync(committed);

        // The next migration, from the copy that runs, succeeds (a destination left in STOP is reset first).
        var (from, to) = committed ? (pair.B, pair.A) : (pair.A, pair.B);
        using var next = await ServedPair.RunAsync(0, "migrate", "--from", "unix:" + from, "--to", "unix:" + to, "--state-dir", state);
        Assert.Contains("verified: destination matches source", next.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Server_keeps_a_stranded_source_and_recover_resumes_it_with_its_state()
    {
        using var pair = await ServedPair.StartAsync();
        string state = pair.SourceState;
        string id = await MigrateAndKillAsync(pair, "stopcopy");
        // The server kept the device where the vanished client left it, and says so.
        Assert.Equal(VfioMigrationState.StopCopy, await ServedPair.StateAsync(pair.A));
        var until = DateTime.UtcNow + Deadline;
        while (!pair.SourceServer.Error.Contains("left the device in STOP_COPY", StringComparison.Ordinal))
        {
            Assert.True(DateTime.UtcNow < until, "the server did not log the device left mid-migration; stderr: " + pair.SourceServer.Error);
            await Task.Delay(50, TestContext.Current.CancellationToken);
        }

        using (var show = await ServedPair.RunAsync(0, "state", "unix:" + pair.A, "--state-dir", state))
        {
            Assert.Contains($"unix:{pair.A}: STOP_COPY", show.Output, StringComparison.Ordinal);
            Assert.Contains($"vfio-mig resolve {id}", show.Output, StringComparison.Ordinal);
        }

        // This host holds the destination's record too, so it decides (aborted: no commit was recorded).
        using (await ServedPair.RunAsync(0, "recover", "unix:" + pair.A, "--state-dir", state))
        {
            Assert.Equal(VfioMigrationState.Running, await ServedPair.StateAsync(pair.A));
            Assert.Equal(pair.Original, await ServedPair.DigestAsync(pair.A));
        }

        // The destination, still in RESUMING, is reset.
        using (await ServedPair.RunAsync(0, "recover", "unix:" + pair.B, "--state-dir", state))
            await pair.AssertExactlyOneRunsAsync(committed: false);

        using (await ServedPair.RunAsync(0, "migrate", "--from", "unix:" + pair.A, "--to", "unix:" + pair.B, "--state-dir", state))
        {
        }
    }

    private static async Task<string> MigrateAndKillAsync(ServedPair pair, string phase)
    {
        using var migrate = new TestSupport.CliProcess("migrate", "--from", "unix:" + pair.A, "--to", "unix:" + pair.B, "--state-dir", pair.SourceState, "--pause-at", phase);
        await migrate.WaitForOutputAsync("paused at " + phase, Deadline);
        string id = ServedPair.IdIn(migrate.Output);
        migrate.Signal("KILL");
        await migrate.WaitOrExplainAsync(Deadline);
        return id;
    }
}
