using System.Globalization;
using Microsoft.Extensions.Logging;
using Vfio.Cli.Commands;
using Vfio.Kernel;
using Vfio.Migration;
using Vfio.Sample;
using Vfio.User.Client;

namespace Vfio.Cli;

/// <summary>
/// One device transport as the command line knows it: the address scheme (<c>SCHEME:TARGET</c>), its form and help
/// lines, how a target is checked while the command line is parsed, how the device is opened, and what it offers.
/// What a command needs from the opened device beyond <see cref="IVfioMigrationDevice"/> it asks by optional
/// interface (<see cref="IDeviceDigestSource"/>, <see cref="IDeviceRegionWriter"/>, <see cref="Conformance.IRawMessageProbe"/>).
/// </summary>
/// <param name="Scheme">The address prefix before the colon.</param>
/// <param name="Form">The address form in option descriptions and errors (<c>unix:PATH</c>).</param>
/// <param name="Help">The lines of the <c>Addresses:</c> help section; the first starts with <paramref name="Form"/>.</param>
/// <param name="TargetNoun">What an empty target lacks (<c>socket path</c>), or null when an empty target is valid.</param>
/// <param name="OutlivesProcess">True when the device exists apart from this process (<c>recover</c> and <c>state</c> take it).</param>
/// <param name="Check">Checks a target while parsing; throws <see cref="VfioException"/> (EINVAL) with plain words.</param>
/// <param name="Open">Opens the device for the user side within a connect timeout, logging to the command's logger factory (if any).</param>
/// <param name="SameDevice">True when two targets name one device (a <c>--from</c>/<c>--to</c> pair must not).</param>
/// <param name="Describe">Prints <c>vfio-mig info</c> for the device (json flag, connect timeout); returns the exit code.</param>
internal sealed record DeviceTransport(
    string Scheme,
    string Form,
    string[] Help,
    string? TargetNoun,
    bool OutlivesProcess,
    Action<string> Check,
    Func<DeviceAddress, TimeSpan, ILoggerFactory?, CancellationToken, ValueTask<IVfioMigrationDevice>> Open,
    Func<string, string, bool> SameDevice,
    Func<DeviceAddress, bool, TimeSpan, CancellationToken, Task<int>> Describe);

/// <summary>
/// The one registration point for device transports: every command takes its address parsing, opening and help
/// text from <see cref="All"/>. Adding a transport is one entry here (docs/architecture.md, "Adding a device
/// transport").
/// </summary>
internal static class DeviceTransports
{
    /// <summary>The built-in sample device, in this process.</summary>
    public static readonly DeviceTransport Sample = new(
        "sample",
        "sample:[KEY=VALUE,...]",
        [
            "sample:[KEY=VALUE,...]   the built-in sample device, in this process; keys: size=64MiB (multiple of 4KiB),",
            "                         caps=0x1|0x3|0x5|0x7, dirty-rate=16MiB/s, seed=N, fault=NAME[+NAME] (for check),",
            "                         reinit-after=SIZE (raise REINIT once after SIZE pre-copy bytes)",
        ],
        TargetNoun: null,
        OutlivesProcess: false,
        Check: target => _ = DeviceAddress.ParseSampleOptions(target),
        Open: (address, _, _, _) => ValueTask.FromResult<IVfioMigrationDevice>(
            new InProcessMigrationDevice(new SampleDevice(DeviceAddress.ParseSampleOptions(address.Target)), address.ToString(), ownsDevice: true)),
        SameDevice: static (_, _) => false, // two sample: addresses are two devices
        Describe: InfoCommand.DescribeSampleAsync);

    /// <summary>A vfio-user server's socket.</summary>
    public static readonly DeviceTransport Unix = new(
        "unix",
        "unix:PATH",
        ["unix:PATH                a vfio-user server's socket (vfio-mig serve, libvfio-user, QEMU's vfio-user)"],
        TargetNoun: "socket path",
        OutlivesProcess: true,
        Check: static _ => { },
        Open: async (address, timeout, loggerFactory, ct) => new VfioUserMigrationDevice(await address.ConnectUnixAsync(timeout, loggerFactory, ct).ConfigureAwait(false)),
        SameDevice: static (a, b) => Path.GetFullPath(a) == Path.GetFullPath(b),
        Describe: InfoCommand.DescribeUnixAsync);

    /// <summary>A kernel VFIO device by sysfs name.</summary>
    public static readonly DeviceTransport Vfio = new(
        "vfio",
        "vfio:NAME",
        ["vfio:NAME                a kernel VFIO device: an mdev UUID or a PCI address (vfio-mig info --list)"],
        TargetNoun: "device",
        OutlivesProcess: true,
        Check: static _ => { },
        Open: (address, _, loggerFactory, ct) =>
        {
            ct.ThrowIfCancellationRequested();
            return ValueTask.FromResult<IVfioMigrationDevice>(KernelMigrationDevice.Open(address.Target, null, loggerFactory));
        },
        SameDevice: static (a, b) => a.Equals(b, StringComparison.OrdinalIgnoreCase),
        Describe: InfoCommand.DescribeKernelAsync);

    /// <summary>Every device transport, in the order help and errors list them.</summary>
    public static readonly IReadOnlyList<DeviceTransport> All = [Sample, Unix, Vfio];

    /// <summary>Not a device: the help line for a receiver's address (<c>send --to</c>), listed after the devices.</summary>
    public const string ReceiverHelp = "tcp://HOST:PORT          a vfio-mig receiver (send --to; receive --listen takes HOST:PORT)";

    /// <summary>The transport registered for <paramref name="scheme"/>, or null.</summary>
    public static DeviceTransport? Find(string scheme) => All.FirstOrDefault(t => t.Scheme == scheme);

    /// <summary>The address forms as words: <c>sample:[KEY=VALUE,...], unix:PATH or vfio:NAME</c>.</summary>
    public static string Forms(bool outlivingProcessOnly = false)
    {
        var forms = All.Where(t => !outlivingProcessOnly || t.OutlivesProcess).Select(t => t.Form).ToList();
        return forms.Count == 1 ? forms[0] : string.Join(", ", forms[..^1]) + " or " + forms[^1];
    }

    /// <summary>The <c>Addresses:</c> help section's lines: every transport's, then the receiver's.</summary>
    public static IEnumerable<string> HelpLines => All.SelectMany(t => t.Help).Append(ReceiverHelp);

    /// <summary>A device option or argument description: <paramref name="role"/>, then the forms.</summary>
    public static string Describe(string role, bool outlivingProcessOnly = false)
        => string.Create(CultureInfo.InvariantCulture, $"{role}: {Forms(outlivingProcessOnly)}");
}
