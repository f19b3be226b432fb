using System.Text.Json;
using System.Text.RegularExpressions;
using Vfio.Cli;
using Vfio.Cli.Commands;
using Vfio.Sample;

namespace Vfio.Tests.Conformance;

public partial class CheckCommandTests
{
    [GeneratedRegex(@"^\d+ passed, \d+ failed, \d+ skipped, \d+ blocked$")]
    private static partial Regex SummaryLine();

    private static async Task<(int Exit, string Out, string Err)> RunAsync(string device, bool json = false, string[]? only = null, bool destructive = false, string? peer = null, bool strict = false, string? junit = null)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int exit = await CheckCommand.RunAsync(new CheckCommand.CheckSettings(device, json, only ?? [], destructive, peer, strict, junit), stdout, stderr, TestContext.Current.CancellationToken);
        return (exit, stdout.ToString(), stderr.ToString());
    }

    [Fact]
    public async Task CleanSample_ExitsZero_WithTablesAndTheSummaryLineLast()
    {
        var (exit, output, err) = await RunAsync("sample:size=1MiB", destructive: true);

        Assert.Equal(0, exit);
        Assert.Empty(err);
        var lines = output.TrimEnd('\n').Split('\n');
        Assert.Matches(SummaryLine(), lines[^1]);
        Assert.Equal("31 passed, 0 failed, 1 skipped, 0 blocked", lines[^1]);
        Assert.Contains("== fsm", lines);
        Assert.Contains(lines, l => l.StartsWith("fsm.rejections", StringComparison.Ordinal) && l.Contains("§2.5", StringComparison.Ordinal) && l.Contains("PASS", StringComparison.Ordinal));
    }

    [Fact]
    public async Task FaultySample_ExitsNonZero_AndNamesTheFailingRule()
    {
        var (exit, output, _) = await RunAsync("sample:size=1MiB,fault=bad-estimate+reuse-stream", only: ["sessions"]);

        Assert.Equal(1, exit);
        Assert.Contains(output.Split('\n'), l => l.StartsWith("sessions.stop-copy-size", StringComparison.Ordinal) && l.Contains("FAIL", StringComparison.Ordinal));
        Assert.Contains(output.Split('\n'), l => l.StartsWith("sessions.stale-stream", StringComparison.Ordinal) && l.Contains("FAIL", StringComparison.Ordinal));
        Assert.DoesNotContain("== fsm", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Json_IsMachineReadable()
    {
        var (exit, output, _) = await RunAsync("sample:size=1MiB,caps=0x3", json: true, only: ["fsm,dirty-logging"]);

        Assert.Equal(0, exit);
        using var doc = JsonDocument.Parse(output);
        Assert.Equal("0x3", doc.RootElement.GetProperty("capabilities").GetString());
        Assert.Equal(0, doc.RootElement.GetProperty("failed").GetInt32());
        var groups = doc.RootElement.GetProperty("results").EnumerateArray().Select(r => r.GetProperty("group").GetString()).Distinct().ToList();
        Assert.Equal(["probe", "fsm", "dirty-logging"], groups);
        Assert.Contains("§2.5", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Peer_RunsTheResumeChecksWithoutAllowDestructive()
    {
        var (exit, output, _) = await RunAsync("sample:size=1MiB", only: ["round-trip"], peer: "sample:size=1MiB,seed=9");

        Assert.Equal(0, exit);
        Assert.Contains(output.Split('\n'), l => l.StartsWith("round-trip.resume", StringComparison.Ordinal) && l.Contains("PASS", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Strict_TurnsTheZeroAtTheTemporaryEndIntoAFailure()
    {
        var (lenient, _, _) = await RunAsync("sample:size=1MiB,fault=skip-enomsg", only: ["precopy"]);
        var (strict, output, _) = await RunAsync("sample:size=1MiB,fault=skip-enomsg", only: ["precopy"], strict: true);

        Assert.Equal(0, lenient);
        Assert.Equal(1, strict);
        Assert.Contains("strict:", output, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("sample:size=1MiB", "nope")]
    [InlineData("sample:fault=no-such-fault", null)]
    [InlineData("pci:0000:00:01.0", null)]
    public async Task UsageErrors_ExitTwo_WithAMessage(string device, string? group)
    {
        var (exit, output, err) = await RunAsync(device, only: group is null ? null : [group]);

        Assert.Equal(2, exit);
        Assert.Empty(output);
        Assert.StartsWith("vfio-mig check: error: E", err, StringComparison.Ordinal);
    }

    [Fact]
    public void SampleAddress_FaultKey_IsRepeatableWithPlus()
    {
        var options = DeviceAddress.ParseSampleOptions("size=1MiB,fault=skip-enomsg+reuse-stream,fault=wrong-path");

        Assert.Equal(SampleDeviceFaults.SkipEnomsg | SampleDeviceFaults.ReuseStream | SampleDeviceFaults.WrongPath, options.Faults);
        Assert.Equal(SampleDeviceFaults.None, DeviceAddress.ParseSampleOptions("size=1MiB").Faults);
    }

    [Fact]
    public void ParseFaults_RejectsUnknownAndEmptyNames()
    {
        Assert.Equal(Errno.EINVAL, Assert.Throws<VfioException>(() => Units.ParseFaults("skip-enomsg+bogus", "fault")).Errno);
        Assert.Equal(Errno.EINVAL, Assert.Throws<VfioException>(() => Units.ParseFaults("", "fault")).Errno);
        Assert.Equal(SampleDeviceFaults.None, Units.ParseFaults("none", "fault"));
    }

    [Fact]
    public void FaultNames_RoundTripThroughFormat()
    {
        foreach (var name in SampleDeviceFaultNames.All)
        {
            Assert.True(SampleDeviceFaultNames.TryParse(name, out var fault));
            Assert.NotEqual(SampleDeviceFaults.None, fault);
            Assert.Equal(name, SampleDeviceFaultNames.Format(fault));
        }
        Assert.Equal(Enum.GetValues<SampleDeviceFaults>().Length - 1, SampleDeviceFaultNames.All.Count);
        Assert.Equal("none", SampleDeviceFaultNames.Format(SampleDeviceFaults.None));
    }
}
