using System.Text.Json;

namespace Vfio.Tests.Cli;

public class DemoCommandTests
{
    private static Task<(int Exit, string Stdout, string Stderr)> RunCliAsync(params string[] args) => TestSupport.CliProcess.RunAsync(args);

    [Fact]
    public async Task Demo_RedirectedOutput_EndsWithTheVerifiedLine()
    {
        var (exit, stdout, stderr) = await RunCliAsync("demo", "--size", "2MiB", "--devices", "2", "--dirty-rate", "1MiB/s");
        Assert.True(exit == 0, stderr);
        var last = stdout.TrimEnd('\n').Split('\n')[^1];
        Assert.Matches("^verified: destination matches source \\(sha256 [0-9a-f]{64}\\)$", last);
        Assert.Contains("migration summary", stdout, StringComparison.Ordinal);
        Assert.Contains("downtime", stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Demo_Json_PrintsAParsableSummary()
    {
        var (exit, stdout, stderr) = await RunCliAsync("demo", "--size", "1MiB", "--caps", "0x5", "--json");
        Assert.True(exit == 0, stderr);
        using var doc = JsonDocument.Parse(stdout);
        Assert.True(doc.RootElement.GetProperty("verified").GetBoolean());
        var migration = doc.RootElement.GetProperty("migration");
        Assert.True(migration.GetProperty("pre_copy_used").GetBoolean());
        Assert.False(migration.GetProperty("p2p_used").GetBoolean());
        Assert.True(migration.GetProperty("downtime_ms").GetDouble() > 0);
        Assert.Equal(64, doc.RootElement.GetProperty("sha256").GetString()!.Length);
        Assert.Contains("verified: destination matches source", stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Demo_KeepsTheDurableRecordsAndPrintsTheMigrationId()
    {
        string dir = Path.Combine(Path.GetTempPath(), "vfio-mig-demo-" + Guid.NewGuid().ToString("N")[..10]);
        try
        {
            var (exit, stdout, stderr) = await RunCliAsync("demo", "--size", "1MiB", "--json", "--state-dir", dir);
            Assert.True(exit == 0, stderr);
            using var doc = JsonDocument.Parse(stdout);
            var id = Guid.Parse(doc.RootElement.GetProperty("migration_id").GetString()!);
            Assert.Contains($"migration {id}: 1 source(s) -> 1 destination(s) (records in {dir})", stderr, StringComparison.Ordinal);
            // The same records as migrate (docs/commit-protocol.md, "Records"): both sides completed, decided committed.
            var store = new Vfio.Records.FileMigrationStore(dir);
            var ct = TestContext.Current.CancellationToken;
            Assert.Equal(Vfio.Engine.MigrationDecision.Committed, (await store.ReadDecisionAsync(id, ct))!.Decision);
            Assert.Equal(Vfio.Engine.MigrationRecordStatus.Completed, (await store.ReadRecordAsync(id, Vfio.Engine.MigrationSide.Source, ct))!.Status);
            Assert.Equal(Vfio.Engine.MigrationRecordStatus.Completed, (await store.ReadRecordAsync(id, Vfio.Engine.MigrationSide.Destination, ct))!.Status);
        }
        finally
        {
            if (Directory.Exists(dir))
                Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public async Task Demo_ReinitAfter_ShowsTheReinitAndStillVerifies()
    {
        // Spec §4.7: the sample source re-initialises mid-pre-copy; its new initial data is acknowledged again.
        var (exit, stdout, stderr) = await RunCliAsync("demo", "--size", "1MiB", "--reinit-after", "512KiB", "--json");
        Assert.True(exit == 0, stderr);
        using var doc = JsonDocument.Parse(stdout);
        Assert.True(doc.RootElement.GetProperty("verified").GetBoolean());
        var device = doc.RootElement.GetProperty("per_device")[0];
        Assert.Equal(1, device.GetProperty("reinits").GetInt32());
        Assert.True(device.GetProperty("initial_data_acknowledged").GetBoolean());
        Assert.Contains("REINIT", stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Demo_NotConverging_ExitsWithOneAndSaysWhy()
    {
        var (exit, _, stderr) = await RunCliAsync("demo", "--size", "1MiB", "--dirty-rate", "64MiB/s", "--downtime-limit", "0ms", "--max-rounds", "2");
        Assert.Equal(1, exit);
        Assert.StartsWith("vfio-mig demo: error: ETIMEDOUT: migration failed in pre-copy", stderr, StringComparison.Ordinal);
        Assert.Contains("  hint: the source devices are RUNNING again", stderr, StringComparison.Ordinal);
        Assert.Contains("  hint: --force-switchover", stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Demo_SeveralDevicesWithoutP2P_IsRefused()
    {
        var (exit, _, stderr) = await RunCliAsync("demo", "--size", "1MiB", "--devices", "2", "--caps", "0x5");
        Assert.Equal(2, exit);
        Assert.StartsWith("vfio-mig demo: error: EINVAL: --devices: 2 devices migrate together only with P2P", stderr, StringComparison.Ordinal);
    }
}
