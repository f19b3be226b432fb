using System.Globalization;
using Vfio.Kernel;
using Vfio.Migration;
using Vfio.Sample;
using Vfio.User.Client;

namespace Vfio.Cli;

/// <summary>
/// A device named on the command line: <c>sample:[size=64MiB,caps=0x7,dirty-rate=16MiB/s,seed=1,fault=NAME+NAME]</c>
/// (the built-in device, in process), <c>unix:PATH</c> (a vfio-user server), <c>vfio:NAME</c> (a kernel
/// VFIO device by sysfs name).
/// </summary>
internal sealed record DeviceAddress(string Scheme, string Target)
{
    public override string ToString() => $"{Scheme}:{Target}";

    /// <summary>Parses an address; throws <see cref="VfioException"/> (EINVAL) with a plain-words reason.</summary>
    public static DeviceAddress Parse(string text)
    {
        int colon = text.IndexOf(':', StringComparison.Ordinal);
        string scheme = colon < 0 ? text : text[..colon];
        string target = colon < 0 ? "" : text[(colon + 1)..];
        if (scheme is not ("sample" or "unix" or "vfio"))
            throw new VfioException(Errno.EINVAL, "parse device address", $"'{text}' is not a device address; use sample:[options], unix:PATH or vfio:NAME");
        if (scheme != "sample" && target.Length == 0)
            throw new VfioException(Errno.EINVAL, "parse device address", $"'{text}' names no {(scheme == "unix" ? "socket path" : "device")}");
        return new DeviceAddress(scheme, target);
    }

    /// <summary>Opens the device for the user side.</summary>
    public ValueTask<IVfioMigrationDevice> OpenAsync(CancellationToken cancellationToken = default)
    {
        switch (Scheme)
        {
            case "sample":
                var device = new SampleDevice(ParseSampleOptions(Target));
                return ValueTask.FromResult<IVfioMigrationDevice>(new InProcessMigrationDevice(device, ToString(), ownsDevice: true));
            case "unix":
                return OpenUnixAsync(Target, cancellationToken);
            case "vfio":
                cancellationToken.ThrowIfCancellationRequested();
                return ValueTask.FromResult<IVfioMigrationDevice>(KernelMigrationDevice.Open(Target));
            default:
                throw new VfioException(Errno.EOPNOTSUPP, $"open {this}", $"the {Scheme}: transport is not available in this build");
        }
    }

    private static async ValueTask<IVfioMigrationDevice> OpenUnixAsync(string path, CancellationToken cancellationToken)
        => await VfioUserMigrationDevice.ConnectAsync(path, null, cancellationToken).ConfigureAwait(false);

    /// <summary>Parses <c>key=value</c> pairs separated by commas into sample-device options.</summary>
    public static SampleDeviceOptions ParseSampleOptions(string text, SampleDeviceOptions? defaults = null)
    {
        var options = defaults ?? SampleDeviceOptions.Default;
        foreach (var pair in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            int eq = pair.IndexOf('=', StringComparison.Ordinal);
            string key = eq < 0 ? pair : pair[..eq], value = eq < 0 ? "" : pair[(eq + 1)..];
            options = key switch
            {
                "size" => options with { SizeBytes = Units.ParseBytes(value, "size") },
                "caps" => options with { Capabilities = Units.ParseCaps(value) },
                "dirty-rate" => options with { DirtyRateBytesPerSecond = Units.ParseRate(value, "dirty-rate") },
                "seed" => options with { Seed = int.Parse(value, CultureInfo.InvariantCulture) },
                "fault" => options with { Faults = options.Faults | Units.ParseFaults(value, "fault") },
                _ => throw new VfioException(Errno.EINVAL, "parse sample options", $"unknown option '{key}' (size, caps, dirty-rate, seed, fault)"),
            };
        }
        return options;
    }
}
