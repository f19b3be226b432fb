using System.Diagnostics;
using System.Security.Cryptography;

namespace Vfio.IntegrationTests.Net;

/// <summary>
/// Two "hosts" for CLI migration tests: two network namespaces joined by a veth pair (sender 10.213.0.1/24,
/// receiver 10.213.0.2/24, namespace-internal only), unique per test. Without root or <c>ip</c>, or when
/// namespaces cannot be made, both run on loopback 127.0.0.1 and the test output says so. Dispose always
/// deletes what was made.
/// </summary>
internal sealed class TwoHosts : IDisposable
{
    public const string SenderIp = "10.213.0.1";
    public const string ReceiverIp = "10.213.0.2";

    private readonly ITestOutputHelper _log;

    private TwoHosts(ITestOutputHelper log) => _log = log;

    /// <summary>True when real namespaces are in use.</summary>
    public bool Namespaces { get; private set; }

    public string? SenderNs { get; private set; }
    public string? ReceiverNs { get; private set; }
    public string SenderLink { get; private set; } = "";
    public string ReceiverLink { get; private set; } = "";

    /// <summary>The address the receiver listens on.</summary>
    public string ReceiverAddress => Namespaces ? ReceiverIp : "127.0.0.1";

    public static TwoHosts Create(ITestOutputHelper log)
    {
        var hosts = new TwoHosts(log);
        string? why = hosts.TrySetUp();
        if (why is not null)
        {
            hosts.TearDown();
            hosts.Namespaces = false;
            hosts.SenderNs = hosts.ReceiverNs = null;
            log.WriteLine($"NOTE: network namespaces are not available ({why}); this test runs sender and receiver as separate processes over loopback 127.0.0.1 instead");
        }
        else
        {
            log.WriteLine($"two hosts: netns {hosts.SenderNs} ({SenderIp}, {hosts.SenderLink}) <-veth-> netns {hosts.ReceiverNs} ({ReceiverIp}, {hosts.ReceiverLink})");
        }
        return hosts;
    }

    private string? TrySetUp()
    {
        if (!OperatingSystem.IsLinux())
            return "not Linux";
        if (Environment.GetEnvironmentVariable("VFIO_TEST_NO_NETNS") == "1")
            return "VFIO_TEST_NO_NETNS=1 asks for loopback";
        if (Environment.UserName != "root" && Run("id", "-u").Output.Trim() != "0")
            return "not root";
        if (Run("ip", "-V").Code != 0)
            return "the ip tool (iproute2) is missing";
        string id = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(3));
        SenderNs = $"vfm{id}s";
        ReceiverNs = $"vfm{id}r";
        SenderLink = $"vfm{id}a";
        ReceiverLink = $"vfm{id}b";
        string[][] steps =
        [
            ["netns", "add", SenderNs],
            ["netns", "add", ReceiverNs],
            ["link", "add", SenderLink, "netns", SenderNs, "type", "veth", "peer", "name", ReceiverLink, "netns", ReceiverNs],
            ["-n", SenderNs, "addr", "add", SenderIp + "/24", "dev", SenderLink],
            ["-n", ReceiverNs, "addr", "add", ReceiverIp + "/24", "dev", ReceiverLink],
            ["-n", SenderNs, "link", "set", "dev", SenderLink, "up"],
            ["-n", ReceiverNs, "link", "set", "dev", ReceiverLink, "up"],
            ["-n", SenderNs, "link", "set", "dev", "lo", "up"],
            ["-n", ReceiverNs, "link", "set", "dev", "lo", "up"],
        ];
        Namespaces = true;
        foreach (var step in steps)
        {
            var (code, output) = Run("ip", step);
            if (code != 0)
                return $"'ip {string.Join(' ', step)}' failed: {output.Trim()}";
        }
        // The veth needs a moment to come up; ping is not needed, a bounded wait for the link state is.
        for (int i = 0; i < 50; i++)
        {
            if (Run("ip", "-n", SenderNs, "link", "show", "dev", SenderLink).Output.Contains("LOWER_UP", StringComparison.Ordinal))
                return null;
            Thread.Sleep(20);
        }
        return null;
    }

    /// <summary>Takes the sender's link down (the cable is cut); false in loopback mode.</summary>
    public bool CutLink()
    {
        if (!Namespaces)
            return false;
        var (code, output) = Run("ip", "netns", "exec", SenderNs!, "ip", "link", "set", "dev", SenderLink, "down");
        _log.WriteLine($"cut: ip netns exec {SenderNs} ip link set dev {SenderLink} down -> {code} {output.Trim()}");
        return code == 0;
    }

    public CliProcess StartSender(IEnumerable<string> args) => CliProcess.Start(SenderNs, args, "sender", _log);

    public CliProcess StartReceiver(IEnumerable<string> args) => CliProcess.Start(ReceiverNs, args, "receiver", _log);

    private void TearDown()
    {
        foreach (var ns in new[] { SenderNs, ReceiverNs })
        {
            if (ns is not null)
                Run("ip", "netns", "del", ns);
        }
    }

    public void Dispose()
    {
        if (Namespaces)
            TearDown();
    }

    internal static (int Code, string Output) Run(string file, params string[] args)
    {
        try
        {
            var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            foreach (var a in args)
                psi.ArgumentList.Add(a);
            using var p = Process.Start(psi)!;
            var stdout = p.StandardOutput.ReadToEndAsync();
            var stderr = p.StandardError.ReadToEndAsync();
            if (!p.WaitForExit(15_000))
            {
                p.Kill(true);
                return (-1, "timed out");
            }
            return (p.ExitCode, stdout.Result + stderr.Result);
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            return (-1, e.Message);
        }
    }
}
