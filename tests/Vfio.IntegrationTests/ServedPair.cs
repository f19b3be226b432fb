using System.Security.Cryptography;
using System.Text.RegularExpressions;
using Vfio.Migration;
using Vfio.Net;
using Vfio.User.Client;

namespace Vfio.IntegrationTests;

/// <summary>
/// Two <c>vfio-mig serve</c> processes (1 MiB sample devices, A seeded 7, B seeded 8, no workload) and a state
/// directory per host, for the process tests that kill a controller mid-migration (docs/commit-protocol.md): the
/// checks after a kill (never both running, nothing lost) and after resolving (exactly one copy runs, with A's
/// original state).
/// </summary>
internal sealed partial class ServedPair : IDisposable
{
    public static readonly TimeSpan Deadline = TimeSpan.FromSeconds(60);

    // serve --size; read with REGION_READ, which a device serves in STOP and STOP_COPY too (GET_REGION_INFO it does not).
    private const int SizeBytes = 1 << 20;

    private ServedPair(TestSupport.CliProcess sourceServer, TestSupport.CliProcess destinationServer, string a, string b, string work)
    {
        SourceServer = sourceServer;
        DestinationServer = destinationServer;
        A = a;
        B = b;
        Work = work;
    }

    /// <summary>The server of device A (the first migration's source).</summary>
    public TestSupport.CliProcess SourceServer { get; }

    public TestSupport.CliProcess DestinationServer { get; }

    /// <summary>Socket of device A.</summary>
    public string A { get; }

    /// <summary>Socket of device B.</summary>
    public string B { get; }

    private string Work { get; }

    /// <summary>The state directory of A's host (where the first migration's source runs).</summary>
    public string SourceState => Path.Combine(Work, "source-host");

    /// <summary>The state directory of B's host.</summary>
    public string DestinationState => Path.Combine(Work, "destination-host");

    /// <summary>SHA-256 of A's state before any migration.</summary>
    public byte[] Original { get; private set; } = [];

    public static async Task<ServedPair> StartAsync()
    {
        string work = Path.Combine(Path.GetTempPath(), "vfio-mig-pair-" + Guid.NewGuid().ToString("N")[..10]);
        Directory.CreateDirectory(work);
        string a = TestSupport.TempSocketPath(), b = TestSupport.TempSocketPath();
        var pair = new ServedPair(Serve(a, 7), Serve(b, 8), a, b, work);
        try
        {
            await pair.SourceServer.WaitForOutputAsync("serving sample device", Deadline);
            await pair.DestinationServer.WaitForOutputAsync("serving sample device", Deadline);
            pair.Original = await DigestAsync(a);
            return pair;
        }
        catch
        {
            pair.Dispose();
            throw;
        }
    }

    /// <summary>A new pre-shared token file for send/receive (mode 0600).</summary>
    public string NewTokenFile()
    {
        string path = Path.Combine(Work, "token-" + Guid.NewGuid().ToString("N")[..8]);
        NetToken.New().WriteNewFile(path);
        return path;
    }

    public static async Task<VfioMigrationState> StateAsync(string socket)
    {
        await using var device = await VfioUserMigrationDevice.ConnectAsync(socket, null, TestContext.Current.CancellationToken);
        return await device.GetStateAsync(TestContext.Current.CancellationToken);
    }

    /// <summary>SHA-256 of BAR0 (the served sample device's state), in any state.</summary>
    public static async Task<byte[]> DigestAsync(string socket)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var device = await VfioUserMigrationDevice.ConnectAsync(socket, null, ct);
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var chunk = new byte[64 << 10];
        for (int at = 0; at < SizeBytes; at += chunk.Length)
        {
            await device.Client.RegionReadAsync(0, (ulong)at, chunk, ct);
            sha.AppendData(chunk);
        }
        return sha.GetHashAndReset();
    }

    /// <summary>
    /// Right after a kill: A and B do not both run A's state, and that state is not lost — A holds it (unchanged), or
    /// B runs with it. A device in STOP_COPY refuses REGION_READ (libvfio-user's gating, spec §7.4): a source held
    /// there is checked by <see cref="AssertExactlyOneRunsAsync"/> once resolved.
    /// </summary>
    public async Task AssertNeverBothAndNothingLostAsync()
    {
        var (sa, sb) = (await StateAsync(A), await StateAsync(B));
        bool bHasIt = sb != VfioMigrationState.StopCopy && (await DigestAsync(B)).AsSpan().SequenceEqual(Original);
        // B RUNNING after a reset runs its own (seed 8) state, not A's: not a second copy.
        Assert.False(Runs(sa) && Runs(sb) && bHasIt, $"both run A's state after the kill (A {sa}, B {sb})");
        bool kept = sa == VfioMigrationState.StopCopy
            || (await DigestAsync(A)).AsSpan().SequenceEqual(Original)
            || (sb == VfioMigrationState.Running && bHasIt);
        Assert.True(kept, $"the state is lost: neither A ({sa}) holds it unchanged nor B ({sb}) runs with it");
    }

    /// <summary>
    /// After resolving: exactly one copy runs A's state — B when the migration was committed (A stays stopped), A
    /// otherwise (B was reset: a reset device runs, holding nothing usable of the migration; its bytes may remain, so
    /// its digest cannot tell).
    /// </summary>
    public async Task AssertExactlyOneRunsAsync(bool committed)
    {
        var (sa, sb) = (await StateAsync(A), await StateAsync(B));
        if (committed)
        {
            Assert.True(sb == VfioMigrationState.Running, $"B is {sb}, not RUNNING");
            Assert.True(sa == VfioMigrationState.Stop, $"A is {sa}, not STOP");
        }
        else
        {
            Assert.True(sa == VfioMigrationState.Running, $"A is {sa}, not RUNNING");
            Assert.True(sb == VfioMigrationState.Running, $"B is {sb}, not reset (RUNNING)");
        }
        Assert.Equal(Original, await DigestAsync(committed ? B : A));
    }

    /// <summary>Runs one CLI command to its end and asserts it exits <paramref name="expected"/>; returns it for its output.</summary>
    public static async Task<TestSupport.CliProcess> RunAsync(int expected, params string[] args)
    {
        var process = new TestSupport.CliProcess(args);
        int rc = await process.WaitOrExplainAsync(TimeSpan.FromMinutes(2));
        Assert.True(rc == expected, $"vfio-mig {string.Join(' ', args)} exited {rc}, not {expected}; stdout: {process.Output} stderr: {process.Error}");
        return process;
    }

    /// <summary>The migration id in a command's output (<c>migration ID</c>).</summary>
    public static string IdIn(string output)
    {
        string id = MigrationId().Match(output).Groups[1].Value;
        Assert.False(string.IsNullOrEmpty(id), "no migration id printed: " + output);
        return id;
    }

    /// <summary>
    /// The arguments of the <c>vfio-mig resolve …</c> command printed after <paramref name="after"/> in
    /// <paramref name="text"/> (up to the end of the line or a parenthesis).
    /// </summary>
    public static string[] ResolveCommandIn(string text, string after, string id)
    {
        var m = Regex.Match(text, $@"{Regex.Escape(after)}vfio-mig (resolve {Regex.Escape(id)}[^\n(]*)");
        Assert.True(m.Success, $"no '{after}vfio-mig resolve {id}' printed: {text}");
        return m.Groups[1].Value.Split(' ', StringSplitOptions.RemoveEmptyEntries);
    }

    private static bool Runs(VfioMigrationState s) => s is VfioMigrationState.Running or VfioMigrationState.RunningP2P or VfioMigrationState.PreCopy or VfioMigrationState.PreCopyP2P;

    private static TestSupport.CliProcess Serve(string socket, int seed)
        => new("serve", "--socket", socket, "--size", "1MiB", "--caps", "0x7", "--seed", seed.ToString(System.Globalization.CultureInfo.InvariantCulture), "--verbose");

    public void Dispose()
    {
        SourceServer.Dispose();
        DestinationServer.Dispose();
        if (Directory.Exists(Work))
            Directory.Delete(Work, recursive: true);
    }

    [GeneratedRegex("migration ([0-9a-f-]{36})")]
    private static partial Regex MigrationId();
}
