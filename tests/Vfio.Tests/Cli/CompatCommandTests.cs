using System.Text.Json;

namespace Vfio.Tests.Cli;

public class CompatCommandTests
{
    [Fact]
    public async Task Compat_SameDevices_AnswersCompatibleWithExit0()
    {
        var (exit, stdout, stderr) = await TestSupport.CliProcess.RunAsync("compat", "--from", "sample:size=1MiB", "--to", "sample:size=1MiB,seed=9", "--json");
        Assert.True(exit == 0, stderr);
        using var doc = JsonDocument.Parse(stdout);
        Assert.True(doc.RootElement.GetProperty("compatible").GetBoolean());
        Assert.True(doc.RootElement.GetProperty("pre_copy").GetBoolean());
        Assert.Equal(0, doc.RootElement.GetProperty("reasons").GetArrayLength());
        Assert.Equal("vfio-mig-sample", doc.RootElement.GetProperty("source").GetProperty("format").GetProperty("name").GetString());
    }

    [Fact]
    public async Task Compat_IncompatibleDevices_ListsEveryReason_AndExits1WithTheErrorLine()
    {
        var (exit, stdout, stderr) = await TestSupport.CliProcess.RunAsync("compat", "--from", "sample:size=1MiB", "--to", "sample:size=2MiB,caps=0x3");
        Assert.Equal(1, exit);
        Assert.Contains("sample:size=1MiB -> sample:size=2MiB,caps=0x3: NOT compatible (with pre-copy)", stdout, StringComparison.Ordinal);
        Assert.Contains("reason [caps.pre_copy]", stdout, StringComparison.Ordinal);
        Assert.Contains("reason [format.parameter]: page_count differs: source 256, destination 512", stdout, StringComparison.Ordinal);
        Assert.StartsWith("vfio-mig compat: error: EOPNOTSUPP: ", stderr, StringComparison.Ordinal);
        Assert.Contains("2 reasons", stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Migrate_IncompatibleDevices_IsRefusedBeforeTheSourceStops_UnlessTheCheckIsSkipped()
    {
        var (exit, _, stderr) = await TestSupport.CliProcess.RunAsync("demo", "--size", "1MiB", "--no-compat-check", "--json");
        Assert.True(exit == 0, stderr);
        string dir = Path.Combine(Path.GetTempPath(), "vfio-compat-" + Guid.NewGuid().ToString("N")[..10]);
        try
        {
            var (refused, _, why) = await TestSupport.CliProcess.RunAsync("migrate", "--from", "sample:size=1MiB", "--to", "sample:size=2MiB", "--state-dir", dir);
            Assert.Equal(1, refused);
            Assert.Contains("EOPNOTSUPP", why, StringComparison.Ordinal);
            Assert.Contains("page_count differs", why, StringComparison.Ordinal);
        }
        finally
        {
            if (Directory.Exists(dir))
                Directory.Delete(dir, recursive: true);
        }
    }
}
