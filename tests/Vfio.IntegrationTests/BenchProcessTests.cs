using System.Diagnostics;
using System.Text.Json;

namespace Vfio.IntegrationTests;

/// <summary>
/// The benches' raw reference and <c>bench migrate</c> as processes. Smoke only: the documents parse and name what
/// ran; timings are never asserted. About 20-60 s in all (8 MiB devices, one pair per series).
/// </summary>
public sealed class BenchProcessTests
{
    private static readonly TimeSpan Deadline = TimeSpan.FromMinutes(5);

    [Fact]
    public async Task Bench_migrate_json_pairs_serve_migrate_and_send_receive_with_the_raw_copy()
    {
        using var bench = new TestSupport.CliProcess("bench", "migrate", "--size", "8MiB", "--dirty-rate", "1MiB/s", "--runs", "1", "--json");
        Assert.True(await bench.WaitOrExplainAsync(Deadline) == 0, bench.Error);
        using var doc = JsonDocument.Parse(bench.Output);
        var root = doc.RootElement;
        Assert.Equal("migrate", root.GetProperty("bench").GetString());
        Assert.Equal("migrate_serve", root.GetProperty("headline_series").GetString());
        Assert.Equal(0.3, root.GetProperty("target_ratio").GetDouble());
        var series = root.GetProperty("series").EnumerateArray().ToList();
        Assert.Equal(["migrate_serve", "send_receive_1ch"], series.Select(s => s.GetProperty("name").GetString()));
        Assert.Equal(["raw_socketpair_1", "raw_tcp_1"], series.Select(s => s.GetProperty("reference").GetString()));
        foreach (var s in series)
        {
            var pair = Assert.Single(s.GetProperty("pairs").EnumerateArray());
            Assert.True(pair.GetProperty("bytes").GetInt64() >= 8L << 20, "a migration of an 8 MiB device moves at least 8 MiB");
            Assert.True(pair.GetProperty("raw_seconds").GetDouble() > 0);
            // The children's CPU is not the migration's alone, so it is not reported; never a 0 that reads as measured.
            Assert.False(pair.TryGetProperty("cpu_seconds", out _), "cpu_seconds of a process-based pair");
            Assert.True(s.GetProperty("context").TryGetProperty("pair1_downtime_ms", out _));
        }
        var context = series[0].GetProperty("context");
        foreach (var process in new[] { "serve_source", "serve_destination", "migrate" })
            Assert.True(context.GetProperty("pair1_rss_beyond_state_mib_" + process).GetDouble() > 0, process);
        Assert.Equal(series[0].GetProperty("median_ratio").GetDouble(), root.GetProperty("headline_ratio").GetDouble());
    }

    // With a C compiler the helper is built (as the test command does) and used; without one the bench says it fell back.
    [Fact]
    public async Task Bench_raw_reference_is_the_C_helper_when_it_can_be_built()
    {
        bool built = await BuildHelperAsync();
        using var bench = new TestSupport.CliProcess("bench", "vfio-user", "--size", "8MiB", "--runs", "1", "--json");
        Assert.True(await bench.WaitOrExplainAsync(Deadline) == 0, bench.Error);
        using var doc = JsonDocument.Parse(bench.Output);
        Assert.Equal(built ? "c_helper" : "dotnet_threads", doc.RootElement.GetProperty("raw_reference_tool").GetString());
        Assert.Contains(built ? "C helper " : "FALLBACK", doc.RootElement.GetProperty("raw_references")[0].GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Bench_without_the_helper_falls_back_and_says_so()
    {
        string missing = Path.Combine(Path.GetTempPath(), "no-rawcopy-" + Guid.NewGuid().ToString("N"));
        using var bench = new TestSupport.CliProcess(null, ["bench", "vfio-user", "--size", "8MiB", "--runs", "1"], ("VFIO_MIG_RAWCOPY", missing));
        Assert.True(await bench.WaitOrExplainAsync(Deadline) == 0, bench.Error);
        Assert.Contains($"raw reference: FALLBACK to blocking send/recv of 1 MiB on .NET threads in this process, 1 AF_UNIX socketpair: VFIO_MIG_RAWCOPY={missing} does not exist", bench.Output, StringComparison.Ordinal);
    }

    // scripts/build-rawcopy.sh; true when the helper exists afterwards (false: no cc on this machine).
    private static async Task<bool> BuildHelperAsync()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Vfio.slnx")))
            dir = dir.Parent;
        Assert.NotNull(dir);
        using var build = Process.Start(new ProcessStartInfo("bash", [Path.Combine(dir.FullName, "scripts", "build-rawcopy.sh")]) { UseShellExecute = false })!;
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        await build.WaitForExitAsync(cts.Token);
        Assert.Equal(0, build.ExitCode);
        return File.Exists(Path.Combine(dir.FullName, "artifacts", "rawcopy", "vfio-mig-rawcopy"));
    }
}
