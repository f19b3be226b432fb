using System.Security.Cryptography;
using System.Text.RegularExpressions;
using Vfio.Migration;
using Vfio.User.Client;

namespace Vfio.IntegrationTests;

/// <summary>
/// kill -9 of <c>migrate</c> (between two <c>serve</c> processes) at each checkpoint of the commit protocol
/// (docs/commit-protocol.md): never both running, nothing lost, one command (<c>resolve</c>) brings the right copy
/// back, and the next migration succeeds. About 10 s per trial.
/// </summary>
public sealed partial class MigrateKillTests
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(60);

    [Theory]
    [InlineData("precopy", "aborted")]
    [InlineData("stopcopy", "aborted")]
    [InlineData("loaded", "aborted")]
    [InlineData("committed", "committed")]
    [InlineData("started", "committed")]
    public async Task Migrate_killed_at_each_phase_resolves_to_exactly_one_copy_and_the_next_migration_succeeds(string phase, string decision)
    {
        string a = TestSupport.TempSocketPath(), b = TestSupport.TempSocketPath();
        string state = Path.Combine(Path.GetTempPath(), "vfio-mig-state-" + Guid.NewGuid().ToString("N")[..10]);
        using var src = Serve(a, 7);
        using var dst = Serve(b, 8);
        await src.WaitForOutputAsync("serving sample device", Deadline);
        await dst.WaitForOutputAsync("serving sample device", Deadline);
        byte[] original = await DigestAsync(a);
        try
        {
            string id = await MigrateAndKillAsync(a, b, state, phase);
            var (sa, sb) = (await StateAsync(a), await StateAsync(b));
            Assert.False(sa == VfioMigrationState.Running && sb == VfioMigrationState.Running, "both run after the kill");
            Assert.NotEqual(VfioMigrationState.Running, sa);

            using var resolve = new TestSupport.CliProcess("resolve", id, "--state-dir", state);
            int rc = await resolve.WaitOrExplainAsync(Deadline);
            Assert.True(rc == 0, $"resolve exited {rc}; stdout: {resolve.Output} stderr: {resolve.Error}");
            Assert.Contains($"migration {id}: {decision}", resolve.Output, StringComparison.Ordinal);

            (sa, sb) = (await StateAsync(a), await StateAsync(b));
            if (decision == "committed")
            {
                Assert.Equal(VfioMigrationState.Stop, sa);
                Assert.Equal(VfioMigrationState.Running, sb);
                Assert.Equal(original, await DigestAsync(b));
            }
            else
            {
                Assert.Equal(VfioMigrationState.Running, sa);
                Assert.Equal(original, await DigestAsync(a));
            }

            // Resolving again changes nothing.
            using (var again = new TestSupport.CliProcess("resolve", id, "--state-dir", state))
                Assert.Equal(0, await again.WaitOrExplainAsync(Deadline));

            // The next migration, from the copy that runs, succeeds (a destination left in STOP is reset first).
            var (from, to) = decision == "committed" ? (b, a) : (a, b);
            using var next = new TestSupport.CliProcess("migrate", "--from", "unix:" + from, "--to", "unix:" + to, "--state-dir", state);
            rc = await next.WaitOrExplainAsync(TimeSpan.FromMinutes(2));
            Assert.True(rc == 0, $"the next migration exited {rc}; stdout: {next.Output} stderr: {next.Error}");
            Assert.Contains("verified: destination matches source", next.Output, StringComparison.Ordinal);
        }
        finally
        {
            if (Directory.Exists(state))
                Directory.Delete(state, recursive: true);
        }
    }

    [Fact]
    public async Task Server_keeps_a_stranded_source_and_recover_resumes_it_with_its_state()
    {
        string a = TestSupport.TempSocketPath(), b = TestSupport.TempSocketPath();
        string state = Path.Combine(Path.GetTempPath(), "vfio-mig-state-" + Guid.NewGuid().ToString("N")[..10]);
        using var src = Serve(a, 7);
        using var dst = Serve(b, 8);
        await src.WaitForOutputAsync("serving sample device", Deadline);
        await dst.WaitForOutputAsync("serving sample device", Deadline);
        byte[] original = await DigestAsync(a);
        try
        {
            string id = await MigrateAndKillAsync(a, b, state, "stopcopy");
            // The server kept the device where the vanished client left it, and says so.
            Assert.Equal(VfioMigrationState.StopCopy, await StateAsync(a));
            var until = DateTime.UtcNow + Deadline;
            while (!src.Error.Contains("left the device in STOP_COPY", StringComparison.Ordinal))
            {
                Assert.True(DateTime.UtcNow < until, "the server did not log the device left mid-migration; stderr: " + src.Error);
                await Task.Delay(50, TestContext.Current.CancellationToken);
            }

            using (var show = new TestSupport.CliProcess("state", "unix:" + a, "--state-dir", state))
            {
                Assert.Equal(0, await show.WaitOrExplainAsync(Deadline));
                Assert.Contains($"unix:{a}: STOP_COPY", show.Output, StringComparison.Ordinal);
                Assert.Contains($"vfio-mig resolve {id}", show.Output, StringComparison.Ordinal);
            }

            // This host holds the destination's record too, so it decides (aborted: no commit was recorded).
            using (var recover = new TestSupport.CliProcess("recover", "unix:" + a, "--state-dir", state))
            {
                int rc = await recover.WaitOrExplainAsync(Deadline);
                Assert.True(rc == 0, $"recover exited {rc}; stdout: {recover.Output} stderr: {recover.Error}");
            }
            Assert.Equal(VfioMigrationState.Running, await StateAsync(a));
            Assert.Equal(original, await DigestAsync(a));

            using (var recover = new TestSupport.CliProcess("recover", "unix:" + b, "--state-dir", state))
                Assert.Equal(0, await recover.WaitOrExplainAsync(Deadline));
            Assert.Equal(VfioMigrationState.Running, await StateAsync(b));

            using var next = new TestSupport.CliProcess("migrate", "--from", "unix:" + a, "--to", "unix:" + b, "--state-dir", state);
            Assert.Equal(0, await next.WaitOrExplainAsync(TimeSpan.FromMinutes(2)));
        }
        finally
        {
            if (Directory.Exists(state))
                Directory.Delete(state, recursive: true);
        }
    }

    private static TestSupport.CliProcess Serve(string socket, int seed)
        => new("serve", "--socket", socket, "--size", "1MiB", "--caps", "0x7", "--seed", seed.ToString(System.Globalization.CultureInfo.InvariantCulture), "--verbose");

    private static async Task<string> MigrateAndKillAsync(string a, string b, string state, string phase)
    {
        using var migrate = new TestSupport.CliProcess("migrate", "--from", "unix:" + a, "--to", "unix:" + b, "--state-dir", state, "--pause-at", phase);
        await migrate.WaitForOutputAsync("paused at " + phase, Deadline);
        string id = MigrationId().Match(migrate.Output).Groups[1].Value;
        Assert.False(string.IsNullOrEmpty(id), migrate.Output);
        migrate.Signal("KILL");
        await migrate.WaitOrExplainAsync(Deadline);
        return id;
    }

    private static async Task<VfioMigrationState> StateAsync(string socket)
    {
        await using var device = await VfioUserMigrationDevice.ConnectAsync(socket, null, TestContext.Current.CancellationToken);
        return await device.GetStateAsync(TestContext.Current.CancellationToken);
    }

    // SHA-256 of BAR0 (the served sample device's state), read with REGION_READ; the size is asked while RUNNING,
    // so this is called on running devices and on devices whose size was learned before.
    private static async Task<byte[]> DigestAsync(string socket)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var device = await VfioUserMigrationDevice.ConnectAsync(socket, null, ct);
        ulong size = (await device.Client.GetRegionInfoAsync(0, ct)).Size;
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var chunk = new byte[64 << 10];
        for (ulong at = 0; at < size; at += (ulong)chunk.Length)
        {
            var part = chunk.AsMemory(0, (int)Math.Min((ulong)chunk.Length, size - at));
            await device.Client.RegionReadAsync(0, at, part, ct);
            sha.AppendData(part.Span);
        }
        return sha.GetHashAndReset();
    }

    [GeneratedRegex("migration ([0-9a-f-]{36})")]
    private static partial Regex MigrationId();
}
