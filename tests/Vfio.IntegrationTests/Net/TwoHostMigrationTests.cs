using System.Net;
using Vfio.Net;
using System.Text.RegularExpressions;

namespace Vfio.IntegrationTests.Net;

/// <summary>
/// <c>vfio-mig send</c> and <c>vfio-mig receive</c> as two processes on two hosts (network namespaces joined by a
/// veth pair; loopback when namespaces are unavailable, said in the output). Every wait is bounded.
/// </summary>
public sealed partial class TwoHostMigrationTests(ITestOutputHelper log) : IDisposable
{
    private static readonly TimeSpan s_exit = TimeSpan.FromSeconds(90);
    private readonly string _dir = Directory.CreateTempSubdirectory("vfio-net-cli-").FullName;

    [GeneratedRegex(@"listening on \S*:(\d+) ")]
    private static partial Regex ListeningRegex();

    [GeneratedRegex(@"^verified: destination matches source \(sha256 ([0-9a-f]{64})\)$")]
    private static partial Regex VerifiedRegex();

    private string TokenFile()
    {
        string path = Path.Combine(_dir, "token-" + Guid.NewGuid().ToString("N")[..6]);
        NetToken.New().WriteNewFile(path);
        return path;
    }

    private static async Task<(CliProcess Receiver, int Port)> StartReceiverAsync(TwoHosts hosts, params string[] extra)
    {
        string listen = hosts.Namespaces ? $"{hosts.ReceiverAddress}:7400" : "127.0.0.1:0";
        var receiver = hosts.StartReceiver(["receive", "--listen", listen, .. extra]);
        string line = await receiver.WaitForLineAsync("listening on", TimeSpan.FromSeconds(30));
        return (receiver, int.Parse(ListeningRegex().Match(line).Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture));
    }

    private static string LastLine(CliProcess p) => p.Stdout.Count == 0 ? "" : p.Stdout[^1];

    [Theory]
    [InlineData(1)]
    [InlineData(4)]
    public async Task Migrate_SampleWithWorkload_Token_BothSidesVerifyTheSameDigest(int channels)
    {
        using var hosts = TwoHosts.Create(log);
        string token = TokenFile();
        var (receiver, port) = await StartReceiverAsync(hosts, "--into", "sample:size=32MiB,seed=2", "--token-file", token);
        using var _r = receiver;
        using var sender = hosts.StartSender(["send", "--from", "sample:size=32MiB,seed=1,dirty-rate=4MiB/s", "--to", $"tcp://{hosts.ReceiverAddress}:{port}", "--token-file", token, "--channels", channels.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
        Assert.Equal(0, await sender.WaitForExitAsync(s_exit));
        Assert.Equal(0, await receiver.WaitForExitAsync(s_exit));
        var s = VerifiedRegex().Match(LastLine(sender));
        var r = VerifiedRegex().Match(LastLine(receiver));
        Assert.True(s.Success, "sender's last line: " + LastLine(sender));
        Assert.True(r.Success, "receiver's last line: " + LastLine(receiver));
        Assert.Equal(s.Groups[1].Value, r.Groups[1].Value);
        Assert.Contains($"{channels} channel(s)", receiver.AllText, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Migrate_VfioUserDevices_EachHostServesOne_VerifiesBar0()
    {
        using var hosts = TwoHosts.Create(log);
        string token = TokenFile();
        string a = Path.Combine(_dir, "src.sock"), b = Path.Combine(_dir, "dst.sock");
        using var serveA = CliProcess.Start(hosts.SenderNs, ["serve", "--socket", a, "--size", "8MiB", "--seed", "1", "--dirty-rate", "1MiB/s"], "serve-source", log);
        using var serveB = CliProcess.Start(hosts.ReceiverNs, ["serve", "--socket", b, "--size", "8MiB", "--seed", "2"], "serve-destination", log);
        await serveA.WaitForLineAsync("serving", TimeSpan.FromSeconds(30));
        await serveB.WaitForLineAsync("serving", TimeSpan.FromSeconds(30));
        var (receiver, port) = await StartReceiverAsync(hosts, "--into", "unix:" + b, "--token-file", token);
        using var _r = receiver;
        using var sender = hosts.StartSender(["send", "--from", "unix:" + a, "--to", $"tcp://{hosts.ReceiverAddress}:{port}", "--token-file", token, "--channels", "2"]);
        Assert.Equal(0, await sender.WaitForExitAsync(s_exit));
        Assert.Equal(0, await receiver.WaitForExitAsync(s_exit));
        var s = VerifiedRegex().Match(LastLine(sender));
        var r = VerifiedRegex().Match(LastLine(receiver));
        Assert.True(s.Success, "sender's last line: " + LastLine(sender));
        Assert.True(r.Success, "receiver's last line: " + LastLine(receiver));
        Assert.Equal(s.Groups[1].Value, r.Groups[1].Value);
    }

    [Fact]
    public async Task Send_Json_PrintsOneObjectWithTheVerdict()
    {
        using var hosts = TwoHosts.Create(log);
        string token = TokenFile();
        var (receiver, port) = await StartReceiverAsync(hosts, "--into", "sample:size=8MiB,seed=2", "--token-file", token);
        using var _r = receiver;
        using var sender = hosts.StartSender(["send", "--from", "sample:size=8MiB,seed=1", "--to", $"tcp://{hosts.ReceiverAddress}:{port}", "--token-file", token, "--json", "--channels", "3"]);
        Assert.Equal(0, await sender.WaitForExitAsync(s_exit));
        Assert.Equal(0, await receiver.WaitForExitAsync(s_exit));
        using var doc = System.Text.Json.JsonDocument.Parse(string.Join('\n', sender.Stdout));
        Assert.True(doc.RootElement.GetProperty("ok").GetBoolean());
        Assert.Equal("match", doc.RootElement.GetProperty("verification").GetString());
        Assert.Equal(3, doc.RootElement.GetProperty("channels").GetInt32());
    }

    [Fact]
    public async Task BenchTcp_SmallRun_ReportsPairedRatiosAndSpeedup()
    {
        using var bench = CliProcess.Start(null, ["bench", "tcp", "--size", "8MiB", "--channels", "2", "--runs", "2"], "bench", log);
        Assert.Equal(0, await bench.WaitForExitAsync(s_exit));
        Assert.Equal(4, bench.Stdout.Count(l => l.StartsWith("pair ", StringComparison.Ordinal) && l.Contains(", ratio ", StringComparison.Ordinal)));
        Assert.Contains(bench.Stdout, l => l.StartsWith("ratio (1 channel(s) vs 1 raw connection(s), sample device over TCP 127.0.0.1): ", StringComparison.Ordinal));
        Assert.Contains(bench.Stdout, l => l.StartsWith("ratio (2 channel(s) vs 2 raw connection(s), sample device over TCP 127.0.0.1): ", StringComparison.Ordinal));
        Assert.Contains(bench.Stdout, l => l.StartsWith("speedup 2 channels over 1: ", StringComparison.Ordinal));
        Assert.Contains(bench.Stdout, l => Regex.IsMatch(l, @"^ratio: \d+\.\d\d \(sample device, 1 channel vs 1 raw blocking TCP connection; target >= 0\.60: (met|NOT met)\)$"));
    }

    [Fact]
    public async Task BenchTcp_Json_HasPairsPerChannelCount()
    {
        using var bench = CliProcess.Start(null, ["bench", "tcp", "--size", "8MiB", "--channels", "2", "--runs", "1", "--json"], "bench", log);
        Assert.Equal(0, await bench.WaitForExitAsync(s_exit));
        using var doc = System.Text.Json.JsonDocument.Parse(string.Join('\n', bench.Stdout));
        var root = doc.RootElement;
        Assert.Equal("tcp", root.GetProperty("bench").GetString());
        Assert.Equal("sample_1ch", root.GetProperty("headline_series").GetString());
        Assert.Equal(0.6, root.GetProperty("target_ratio").GetDouble());
        var series = root.GetProperty("series").EnumerateArray().ToList();
        Assert.Equal(["sample_1ch", "sample_2ch", "context"], series.Select(s => s.GetProperty("name").GetString()));
        Assert.Equal("raw_tcp_2", series[1].GetProperty("reference").GetString());
        Assert.Single(series[0].GetProperty("pairs").EnumerateArray());
        Assert.True(series[0].GetProperty("pairs")[0].GetProperty("raw_seconds").GetDouble() > 0);
    }

    [Fact]
    public async Task Migrate_MutualTls_Verifies()
    {
        using var hosts = TwoHosts.Create(log);
        using var certs = new TestCertificates(Path.Combine(_dir, "certs"));
        var (receiver, port) = await StartReceiverAsync(hosts, "--into", "sample:size=16MiB,seed=5", "--tls-cert", certs.ServerCertPath, "--tls-key", certs.ServerKeyPath, "--client-ca", certs.CaPath);
        using var _r = receiver;
        using var sender = hosts.StartSender(["send", "--from", "sample:size=16MiB,seed=6", "--to", $"tcp://{hosts.ReceiverAddress}:{port}", "--tls-ca", certs.CaPath, "--tls-cert", certs.ClientCertPath, "--tls-key", certs.ClientKeyPath, "--channels", "2"]);
        Assert.Equal(0, await sender.WaitForExitAsync(s_exit));
        Assert.Equal(0, await receiver.WaitForExitAsync(s_exit));
        Assert.Matches(VerifiedRegex(), LastLine(sender));
        Assert.Matches(VerifiedRegex(), LastLine(receiver));
        Assert.Contains("mutual TLS", sender.AllText, StringComparison.Ordinal);
    }

    [Fact]
    public async Task UnauthenticatedSender_IsRefused_BothSidesSayWhy_TheReceiverWaitsForTheRealOne()
    {
        using var hosts = TwoHosts.Create(log);
        string token = TokenFile();
        var (receiver, port) = await StartReceiverAsync(hosts, "--into", "sample:size=4MiB,seed=2", "--token-file", token);
        using var _r = receiver;
        using (var stranger = hosts.StartSender(["send", "--from", "sample:size=4MiB", "--to", $"tcp://{hosts.ReceiverAddress}:{port}", "--insecure"]))
        {
            Assert.Equal(1, await stranger.WaitForExitAsync(s_exit));
            Assert.Contains("EACCES", stranger.StderrText, StringComparison.Ordinal);
            Assert.Contains("requires a pre-shared token", stranger.StderrText, StringComparison.Ordinal);
        }
        using var sender = hosts.StartSender(["send", "--from", "sample:size=4MiB,seed=1", "--to", $"tcp://{hosts.ReceiverAddress}:{port}", "--token-file", token]);
        Assert.Equal(0, await sender.WaitForExitAsync(s_exit));
        Assert.Equal(0, await receiver.WaitForExitAsync(s_exit));
        Assert.Matches(@"vfio-mig receive: dropped connection from \S+: EACCES: .*offered none", receiver.StderrText);
        Assert.Matches(VerifiedRegex(), LastLine(receiver));
    }

    [Fact]
    public async Task SecondReceiverOnTheSamePort_FailsWithEaddrinuse()
    {
        var (first, port) = await StartLoopbackReceiverAsync("--into", "sample:size=4MiB", "--token-file", TokenFile(), "--accept-timeout", "60s");
        using var _f = first;
        using var second = CliProcess.Start(null, ["receive", "--listen", $"127.0.0.1:{port}", "--into", "sample:size=4MiB", "--token-file", TokenFile()], "second receiver", log);
        Assert.Equal(1, await second.WaitForExitAsync(s_exit));
        Assert.Contains("vfio-mig receive: error: EADDRINUSE: ", second.StderrText, StringComparison.Ordinal);
    }

    [Fact]
    public async Task PlainTcpWithoutTokenOrInsecure_IsRefusedUpFront()
    {
        using var hosts = TwoHosts.Create(log);
        using var sender = hosts.StartSender(["send", "--from", "sample:size=4MiB", "--to", $"tcp://{hosts.ReceiverAddress}:7400"]);
        Assert.NotEqual(0, await sender.WaitForExitAsync(s_exit));
        Assert.Contains("--insecure", sender.StderrText, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ReceiverFailsResumingToStop_SourceRunsUnchanged_DestinationReset()
    {
        using var hosts = TwoHosts.Create(log);
        string token = TokenFile();
        var (receiver, port) = await StartReceiverAsync(hosts, "--into", "sample:size=16MiB,seed=2", "--token-file", token, "--inject-fault", "resume-stop");
        using var _r = receiver;
        using var sender = hosts.StartSender(["send", "--from", "sample:size=16MiB,seed=1", "--to", $"tcp://{hosts.ReceiverAddress}:{port}", "--token-file", token, "--channels", "2"]);
        Assert.Equal(1, await sender.WaitForExitAsync(s_exit));
        Assert.Equal(1, await receiver.WaitForExitAsync(s_exit));
        Assert.Contains("EIO", sender.StderrText, StringComparison.Ordinal);
        Assert.Contains("is RUNNING, state unchanged", sender.StderrText, StringComparison.Ordinal);
        Assert.Contains(": RUNNING after a reset: it holds nothing usable of this migration", receiver.StderrText, StringComparison.Ordinal);
    }

    [Fact]
    public async Task IncompatibleDevices_TheReceiverRefusesTheSendersProfile_BeforeTheSourceStops()
    {
        // docs/compatibility.md: the profile crosses in the forward stream's Profile frame; every reason comes back.
        using var hosts = TwoHosts.Create(log);
        string token = TokenFile();
        var (receiver, port) = await StartReceiverAsync(hosts, "--into", "sample:size=2MiB,caps=0x3,seed=2", "--token-file", token);
        using var _r = receiver;
        using var sender = hosts.StartSender(["send", "--from", "sample:size=1MiB,seed=1", "--to", $"tcp://{hosts.ReceiverAddress}:{port}", "--token-file", token]);
        Assert.Equal(1, await sender.WaitForExitAsync(s_exit));
        Assert.Equal(1, await receiver.WaitForExitAsync(s_exit));
        Assert.Contains("EOPNOTSUPP", sender.StderrText, StringComparison.Ordinal);
        Assert.Contains("incompatible (2 reasons)", sender.StderrText, StringComparison.Ordinal);
        Assert.Contains("page_count differs: source 256, destination 512", receiver.StderrText, StringComparison.Ordinal);
        Assert.Contains("is RUNNING, state unchanged", sender.StderrText, StringComparison.Ordinal);
    }

    [Fact]
    public async Task LinkCutMidMigration_BothSidesFail_SourceRunsUnchanged()
    {
        using var hosts = TwoHosts.Create(log);
        string token = TokenFile();
        FaultProxy? proxy = null;
        var (receiver, port) = await StartReceiverAsync(hosts, "--into", "sample:size=256MiB,seed=2", "--token-file", token, "--idle-timeout", "2s");
        using var _r = receiver;
        int target = port;
        if (!hosts.Namespaces)
        {
            log.WriteLine("NOTE: no namespaces, so the cut is made by a loopback proxy that resets both connections after 1 MiB");
            proxy = new FaultProxy(new IPEndPoint(IPAddress.Loopback, port), ProxyFault.Cut, connection: 1, offset: 1 << 20);
            target = proxy.Port;
        }
        try
        {
            // A dirty rate near the link's bandwidth and a 1 ms downtime limit keep pre-copy from converging,
            // so the cut right after connecting always lands mid-migration, however fast the machine is.
            using var sender = hosts.StartSender(["send", "--from", "sample:size=256MiB,seed=1,dirty-rate=1GiB/s", "--to", $"tcp://{hosts.ReceiverAddress}:{target}", "--token-file", token, "--channels", "2", "--idle-timeout", "2s", "--downtime-limit", "1ms"]);
            await sender.WaitForLineAsync("connected to", TimeSpan.FromSeconds(30));
            if (hosts.Namespaces)
                Assert.True(hosts.CutLink());
            Assert.Equal(1, await sender.WaitForExitAsync(s_exit));
            Assert.Equal(1, await receiver.WaitForExitAsync(s_exit));
            Assert.Matches("ETIMEDOUT|ECONNRESET", sender.StderrText);
            Assert.Matches("ETIMEDOUT|ECONNRESET", receiver.StderrText);
            Assert.Contains("is RUNNING", sender.StderrText, StringComparison.Ordinal);
            Assert.Contains(": RUNNING after a reset: it holds nothing usable of this migration", receiver.StderrText, StringComparison.Ordinal);
        }
        finally
        {
            if (proxy is not null)
                await proxy.DisposeAsync();
        }
    }

    [Fact]
    public async Task SenderKilledMidMigration_ReceiverFailsAndResetsItsDevice()
    {
        using var hosts = TwoHosts.Create(log);
        string token = TokenFile();
        var (receiver, port) = await StartReceiverAsync(hosts, "--into", "sample:size=256MiB,seed=2", "--token-file", token, "--idle-timeout", "3s");
        using var _r = receiver;
        using var sender = hosts.StartSender(["send", "--from", "sample:size=256MiB,seed=1,dirty-rate=32MiB/s", "--to", $"tcp://{hosts.ReceiverAddress}:{port}", "--token-file", token, "--channels", "3", "--downtime-limit", "1ms"]);
        await sender.WaitForLineAsync("connected to", TimeSpan.FromSeconds(30));
        await Task.Delay(200);
        sender.Kill();
        Assert.Equal(1, await receiver.WaitForExitAsync(s_exit));
        Assert.Matches("ECONNRESET|ETIMEDOUT", receiver.StderrText);
        Assert.Contains(": RUNNING after a reset: it holds nothing usable of this migration", receiver.StderrText, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(ProxyFault.Corrupt, "EBADMSG")]
    [InlineData(ProxyFault.Stall, "ETIMEDOUT")]
    public async Task CorruptedOrStalledStream_ThroughProxy_BothSidesFail_SourceUnchanged(ProxyFault fault, string errno)
    {
        log.WriteLine("NOTE: the fault proxy runs in the test process, so sender and receiver run over loopback 127.0.0.1 for this test");
        string token = TokenFile();
        var (receiver, port) = await StartLoopbackReceiverAsync("--into", "sample:size=32MiB,seed=2", "--token-file", token, "--idle-timeout", "2s");
        using var _r = receiver;
        await using var proxy = new FaultProxy(new IPEndPoint(IPAddress.Loopback, port), fault, connection: 1, offset: 2 << 20);
        using var sender = CliProcess.Start(null, ["send", "--from", "sample:size=32MiB,seed=1", "--to", $"tcp://127.0.0.1:{proxy.Port}", "--token-file", token, "--channels", "2", "--idle-timeout", "2s"], "sender", log);
        Assert.Equal(1, await sender.WaitForExitAsync(s_exit));
        Assert.Equal(1, await receiver.WaitForExitAsync(s_exit));
        Assert.True(proxy.Triggered);
        Assert.Contains(errno, receiver.StderrText, StringComparison.Ordinal);
        // A stall is seen by whichever side's watchdog fires first; the other one sees that side give up (a reset).
        Assert.Matches(fault == ProxyFault.Stall ? "ETIMEDOUT|ECONNRESET" : errno, sender.StderrText);
        Assert.Contains("is RUNNING, state unchanged", sender.StderrText, StringComparison.Ordinal);
        Assert.Contains(": RUNNING after a reset: it holds nothing usable of this migration", receiver.StderrText, StringComparison.Ordinal);
    }

    private async Task<(CliProcess, int)> StartLoopbackReceiverAsync(params string[] extra)
    {
        var receiver = CliProcess.Start(null, ["receive", "--listen", "127.0.0.1:0", .. extra], "receiver", log);
        string line = await receiver.WaitForLineAsync("listening on", TimeSpan.FromSeconds(30));
        return (receiver, int.Parse(ListeningRegex().Match(line).Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture));
    }

    public void Dispose()
    {
        try
        {
            Directory.Delete(_dir, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
