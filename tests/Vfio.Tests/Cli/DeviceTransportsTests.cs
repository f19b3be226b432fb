using System.CommandLine;
using Vfio.Cli;

namespace Vfio.Tests.Cli;

/// <summary>
/// The one registration point for device transports: every command that takes a device lists every registered
/// transport in its help, and addresses parse (and fail) per scheme with the same one-line errors.
/// </summary>
public class DeviceTransportsTests
{
    private static IEnumerable<(string Path, Command Command)> Leaves()
        => CliHelpTests.Leaves(CliApp.Build(), []).Select(l => (string.Join(' ', l.Path), l.Command));

    private static bool TakesAddress(Command c) => c.Options.Any(o => o.HelpName == "ADDRESS") || c.Arguments.Any(a => a.HelpName == "ADDRESS");

    public static TheoryData<string> CommandsTakingADevice()
        => [.. Leaves().Where(l => TakesAddress(l.Command)).Select(l => l.Path)];

    [Fact]
    public void Six_commands_and_more_take_a_device_address()
        => Assert.True(CommandsTakingADevice().Count >= 6, string.Join(", ", CommandsTakingADevice()));

    [Theory]
    [MemberData(nameof(CommandsTakingADevice))]
    public async Task Every_command_that_takes_a_device_lists_every_registered_transport(string command)
    {
        var stdout = new StringWriter();
        Assert.Equal(0, await CliApp.RunAsync([.. command.Split(' '), "--help"], stdout, new StringWriter(), TestContext.Current.CancellationToken));
        string help = stdout.ToString();
        string addresses = help[help.IndexOf("Addresses:", StringComparison.Ordinal)..];
        string options = help[..help.IndexOf("Addresses:", StringComparison.Ordinal)];
        bool outlivingOnly = command is "recover" or "state"; // they take only devices that outlive a process
        foreach (var transport in DeviceTransports.All)
        {
            foreach (var line in transport.Help)
                Assert.Contains("  " + line, addresses, StringComparison.Ordinal);
            if (transport.OutlivesProcess || !outlivingOnly)
                Assert.Contains(transport.Form, options, StringComparison.Ordinal);
        }
    }

    [Theory]
    [InlineData("sample:", "sample", "")]
    [InlineData("sample:size=4MiB,caps=0x5,seed=2", "sample", "size=4MiB,caps=0x5,seed=2")]
    [InlineData("unix:./a.sock", "unix", "./a.sock")]
    [InlineData("unix:/run/dev:1.sock", "unix", "/run/dev:1.sock")]
    [InlineData("vfio:0000:65:00.0", "vfio", "0000:65:00.0")]
    [InlineData("vfio:83b8f4f2-509f-382f-3c1e-e6bfe0fa1001", "vfio", "83b8f4f2-509f-382f-3c1e-e6bfe0fa1001")]
    public void Each_scheme_parses_to_its_transport(string text, string scheme, string target)
    {
        var address = DeviceAddress.Parse(text);
        Assert.Equal(scheme, address.Scheme);
        Assert.Equal(target, address.Target);
        Assert.Same(DeviceTransports.Find(scheme), address.Transport);
        Assert.Equal(text, address.ToString());
    }

    [Theory]
    [InlineData("nfs:/x", "'nfs:/x' is not a device address; use sample:[KEY=VALUE,...], unix:PATH or vfio:NAME")]
    [InlineData("a.sock", "'a.sock' is not a device address; use sample:[KEY=VALUE,...], unix:PATH or vfio:NAME")]
    [InlineData("tcp://10.0.0.2:7400", "'tcp://10.0.0.2:7400' is not a device address; a tcp:// address is a receiver (vfio-mig send --to), not a device")]
    [InlineData("unix:", "'unix:' names no socket path")]
    [InlineData("vfio:", "'vfio:' names no device")]
    [InlineData("sample:colour=red", "unknown key 'colour' (size, caps, dirty-rate, seed, reinit-after, fault)")]
    public void Bad_addresses_fail_with_EINVAL_and_plain_words(string text, string words)
    {
        var e = Assert.Throws<VfioException>(() => DeviceAddress.Parse(text));
        Assert.Equal(Errno.EINVAL, e.Errno);
        Assert.EndsWith(words, e.Message, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Theory]
    [InlineData("unix:./a.sock", "unix:a.sock", true)]
    [InlineData("unix:./a.sock", "unix:./b.sock", false)]
    [InlineData("vfio:0000:65:00.0", "vfio:0000:65:00.0", true)]
    [InlineData("vfio:ABC", "vfio:abc", true)]
    [InlineData("sample:", "sample:", false)]
    [InlineData("unix:vfio", "vfio:vfio", false)]
    public void Same_device_is_decided_by_the_transport(string a, string b, bool same)
        => Assert.Equal(same, DeviceAddress.Parse(a).SameDeviceAs(DeviceAddress.Parse(b)));

    [Fact]
    public async Task A_bad_address_on_the_command_line_is_one_error_line_and_exit_2()
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int exit = await CliApp.RunAsync(["migrate", "--from", "nfs:/x", "--to", "sample:"], stdout, stderr, TestContext.Current.CancellationToken);
        Assert.Equal(ExitCodes.Usage, exit);
        string[] lines = stderr.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.StartsWith("vfio-mig migrate: error: EINVAL: ", lines[0], StringComparison.Ordinal);
        Assert.Contains("'nfs:/x' is not a device address; use sample:[KEY=VALUE,...], unix:PATH or vfio:NAME", lines[0], StringComparison.Ordinal);
        Assert.All(lines.Skip(1), l => Assert.StartsWith("  hint: ", l, StringComparison.Ordinal));
    }

    [Fact]
    public async Task Recover_refuses_an_in_process_device_while_parsing()
    {
        var stderr = new StringWriter();
        int exit = await CliApp.RunAsync(["recover", "sample:"], new StringWriter(), stderr, TestContext.Current.CancellationToken);
        Assert.Equal(ExitCodes.Usage, exit);
        Assert.Contains("a sample: device lives in one process; there is nothing to recover or show", stderr.ToString(), StringComparison.Ordinal);
    }
}
