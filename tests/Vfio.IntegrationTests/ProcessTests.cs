using System.Net.Sockets;

namespace Vfio.IntegrationTests;

/// <summary>The CLI as separate processes: two servers, a migration between them, signals.</summary>
public sealed class ProcessTests
{
    private static readonly TimeSpan Startup = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task Migrate_between_two_served_processes_verifies_equal_state()
    {
        string a = TestSupport.TempSocketPath(), b = TestSupport.TempSocketPath();
        using var src = new TestSupport.CliProcess("serve", "--socket", a, "--size", "16MiB", "--dirty-rate", "4MiB/s", "--seed", "7", "--verbose");
        using var dst = new TestSupport.CliProcess("serve", "--socket", b, "--size", "16MiB", "--seed", "8", "--verbose");
        await src.WaitForOutputAsync($"serving sample device (16.0 MiB, caps 0x5) on {a}", Startup);
        await dst.WaitForOutputAsync($"serving sample device (16.0 MiB, caps 0x5) on {b}", Startup);

        using var migrate = new TestSupport.CliProcess("migrate", "--from", "unix:" + a, "--to", "unix:" + b, "--downtime-limit", "300ms");
        int rc = await migrate.WaitAsync(TimeSpan.FromMinutes(3));
        Assert.True(rc == 0, $"migrate exited {rc}; stdout: {migrate.Output} stderr: {migrate.Error}");
        Assert.Contains("verified: destination matches source (sha256 ", migrate.Output, StringComparison.Ordinal);

        // A second client of the same servers works (sequential clients), with JSON output.
        using var info = new TestSupport.CliProcess("info", "unix:" + b, "--json");
        Assert.Equal(0, await info.WaitAsync(TimeSpan.FromMinutes(1)));
        Assert.Contains("\"state\": \"RUNNING\"", info.Output, StringComparison.Ordinal);
        Assert.Contains("\"caps\": \"0x5\"", info.Output, StringComparison.Ordinal);

        // SIGTERM: clean exit, socket removed.
        Assert.Equal(0, await src.SignalAndWaitAsync("TERM", TimeSpan.FromSeconds(30)));
        Assert.Equal(0, await dst.SignalAndWaitAsync("INT", TimeSpan.FromSeconds(30)));
        Assert.False(PathExists(a));
        Assert.False(PathExists(b));
    }

    [Fact]
    public async Task Serve_replaces_a_stale_socket_but_not_a_live_one_or_a_regular_file()
    {
        string path = TestSupport.TempSocketPath();
        // A stale socket: a server killed with SIGKILL leaves its socket file behind.
        using (var killed = new TestSupport.CliProcess("serve", "--socket", path, "--size", "1MiB"))
        {
            await killed.WaitForOutputAsync("serving sample device", Startup);
            killed.Signal("KILL");
            await killed.WaitAsync(TimeSpan.FromSeconds(30));
        }
        Assert.True(PathExists(path)); // the stale socket file is there
        using var server = new TestSupport.CliProcess("serve", "--socket", path, "--size", "1MiB");
        await server.WaitForOutputAsync("serving sample device", Startup);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(path));

        using var second = new TestSupport.CliProcess("serve", "--socket", path, "--size", "1MiB");
        Assert.Equal(1, await second.WaitAsync(TimeSpan.FromSeconds(30)));
        Assert.Contains("EADDRINUSE", second.Error, StringComparison.Ordinal);

        string file = TestSupport.TempSocketPath();
        await File.WriteAllTextAsync(file, "not a socket", TestContext.Current.CancellationToken);
        using var third = new TestSupport.CliProcess("serve", "--socket", file, "--size", "1MiB");
        Assert.Equal(1, await third.WaitAsync(TimeSpan.FromSeconds(30)));
        Assert.Contains("EEXIST", third.Error, StringComparison.Ordinal);
        Assert.Equal("not a socket", await File.ReadAllTextAsync(file, TestContext.Current.CancellationToken));
        File.Delete(file);

        Assert.Equal(0, await server.SignalAndWaitAsync("TERM", TimeSpan.FromSeconds(30)));
    }

    [Fact]
    public async Task Check_over_vfio_user_passes_on_the_sample_and_fails_the_matching_rule_on_a_served_fault()
    {
        // spec §4.3 (truncated resume rejected) and §3.4 (reset in any state), observed through a served device.
        string good = TestSupport.TempSocketPath(), bad = TestSupport.TempSocketPath();
        using var goodServer = new TestSupport.CliProcess("serve", "--socket", good, "--size", "1MiB", "--caps", "0x7");
        using var badServer = new TestSupport.CliProcess("serve", "--socket", bad, "--size", "1MiB", "--caps", "0x7", "--fault", "accept-truncated");
        await goodServer.WaitForOutputAsync($"serving sample device (1.0 MiB, caps 0x7) on {good}", Startup);
        await badServer.WaitForOutputAsync("faults AcceptTruncated", Startup);

        using var pass = new TestSupport.CliProcess("check", "unix:" + good, "--allow-destructive");
        int rc = await pass.WaitAsync(TimeSpan.FromMinutes(3));
        Assert.True(rc == 0, $"check exited {rc}; stdout: {pass.Output} stderr: {pass.Error}");
        Assert.Matches(@"(?m)^\d+ passed, 0 failed, \d+ skipped, 0 blocked$", pass.Output);
        // The robustness group runs over vfio-user: malformed requests get error replies, the server keeps serving.
        Assert.Matches(@"robustness\.raw-messages\s+\S+\s+PASS\s+unknown command 200: E", pass.Output);

        using var fail = new TestSupport.CliProcess("check", "unix:" + bad, "--only", "sessions", "--allow-destructive");
        Assert.Equal(1, await fail.WaitAsync(TimeSpan.FromMinutes(3)));
        Assert.Matches(@"sessions\.resume-truncated\s+\S+\s+\S*\s*FAIL", fail.Output);
        Assert.Matches(@"sessions\.stale-after-reset\s+\S+\s+\S*\s*PASS", fail.Output);

        Assert.Equal(0, await goodServer.SignalAndWaitAsync("TERM", TimeSpan.FromSeconds(30)));
        Assert.Equal(0, await badServer.SignalAndWaitAsync("TERM", TimeSpan.FromSeconds(30)));
    }

    private static bool PathExists(string path)
    {
        try
        {
            File.GetAttributes(path);
            return true;
        }
        catch (FileNotFoundException)
        {
            return false;
        }
    }

    [Fact]
    public async Task Info_works_for_sample_devices()
    {
        using var info = new TestSupport.CliProcess("info", "sample:size=2MiB,caps=0x5");
        Assert.Equal(0, await info.WaitAsync(TimeSpan.FromMinutes(1)));
        Assert.Contains("0 BAR0   size      2097152", info.Output, StringComparison.Ordinal);
        Assert.Contains("migration: caps 0x5, state RUNNING", info.Output, StringComparison.Ordinal);
    }

    // Smoke only: the lines are printed and parse; timings are never asserted.
    [Fact]
    public async Task Bench_vfio_user_prints_paired_runs_and_the_ratios()
    {
        using var bench = new TestSupport.CliProcess("bench", "vfio-user", "--size", "8MiB", "--runs", "2");
        Assert.Equal(0, await bench.WaitAsync(TimeSpan.FromMinutes(3)));
        var lines = bench.Output.Split('\n');
        Assert.Equal(4, lines.Count(l => l.StartsWith("run ", StringComparison.Ordinal) && l.Contains(", ratio ", StringComparison.Ordinal)));
        Assert.Contains(lines, l => l.StartsWith("ratio (sample device): ", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.StartsWith("ratio (memory-image device (transport only)): ", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.StartsWith("context, not the reference: raw socketpair re-sending one cache-hot 1 MiB buffer: ", StringComparison.Ordinal));
        var headline = Assert.Single(lines, l => l.StartsWith("ratio: ", StringComparison.Ordinal));
        Assert.Matches(@"^ratio: \d+\.\d\d \(sample device through client\+server vs raw socketpair, blocking; target >= 0\.95: (met|NOT met)\)", headline);
    }

    [Fact]
    public async Task Bench_vfio_user_json_has_the_pairs_and_the_headline_of_the_sample_device()
    {
        using var bench = new TestSupport.CliProcess("bench", "vfio-user", "--size", "8MiB", "--runs", "2", "--json");
        Assert.Equal(0, await bench.WaitAsync(TimeSpan.FromMinutes(3)));
        using var doc = System.Text.Json.JsonDocument.Parse(bench.Output);
        var root = doc.RootElement;
        Assert.Equal("vfio-user", root.GetProperty("bench").GetString());
        Assert.Equal(8L << 20, root.GetProperty("size_bytes").GetInt64());
        Assert.Equal("sample", root.GetProperty("headline_series").GetString());
        Assert.Equal(0.95, root.GetProperty("target_ratio").GetDouble());
        var series = root.GetProperty("series").EnumerateArray().ToList();
        Assert.Equal(["sample", "memory_image"], series.Select(s => s.GetProperty("name").GetString()));
        foreach (var s in series)
        {
            var pairs = s.GetProperty("pairs").EnumerateArray().ToList();
            Assert.Equal(2, pairs.Count);
            Assert.All(pairs, p => Assert.True(p.GetProperty("bytes").GetInt64() >= 8L << 20));
            Assert.All(pairs, p => Assert.True(p.GetProperty("raw_seconds").GetDouble() > 0));
        }
        Assert.Equal(series[0].GetProperty("median_ratio").GetDouble(), root.GetProperty("headline_ratio").GetDouble());
    }
}
