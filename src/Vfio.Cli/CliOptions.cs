using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;
using Vfio.Migration;

namespace Vfio.Cli;

/// <summary>A byte count as an option value; prints as it would be typed (<c>64MiB</c>).</summary>
internal readonly record struct ByteSize(long Bytes)
{
    public override string ToString() => Units.FormatExact(Bytes);
}

/// <summary>Bytes per second as an option value (<c>8MiB/s</c>, <c>0</c>).</summary>
internal readonly record struct ByteRate(long BytesPerSecond)
{
    public override string ToString() => BytesPerSecond == 0 ? "0" : Units.FormatExact(BytesPerSecond) + "/s";
}

/// <summary>A duration as an option value (<c>300ms</c>, <c>10s</c>).</summary>
internal readonly record struct Duration(TimeSpan Value)
{
    public override string ToString() => Value.TotalMilliseconds % 1000 == 0 && Value > TimeSpan.Zero
        ? Value.TotalSeconds.ToString("0", CultureInfo.InvariantCulture) + "s"
        : Value.TotalMilliseconds.ToString("0.###", CultureInfo.InvariantCulture) + "ms";
}

/// <summary>A capability set as an option value (<c>0x7</c>).</summary>
internal readonly record struct Caps(VfioMigrationFlags Flags)
{
    public override string ToString() => MigrationStateMachine.FormatCaps(Flags);
}

/// <summary>
/// The options several commands share, each validated while parsing: a bad value is a parse error (exit 2,
/// one line and a pointer to --help) before any action runs, so an action never re-checks them.
/// </summary>
internal static class CliOptions
{
    /// <summary>Default of <c>--connect-timeout</c>: the connect and the vfio-user handshake together.</summary>
    public static readonly TimeSpan DefaultConnectTimeout = TimeSpan.FromSeconds(10);

    public static Option<bool> Json() => new("--json") { Description = "Print one JSON document on stdout (snake_case keys; docs/cli/conventions.md); progress and errors go to stderr" };

    public static Option<ByteSize> DeviceSize(string defaultText, string description = "Device state size (a multiple of 4KiB; binary suffixes as in QEMU: 64M = 64MiB)")
        => Parsed("--size", description, t => new ByteSize(Units.ParseDeviceSize(t, "size")), defaultText, "SIZE");

    public static Option<ByteSize> Size(string name, string description, string defaultText, long min, long max, long multipleOf = 1)
        => Parsed(name, description, t =>
        {
            long bytes = Units.ParseBytes(t, name[2..]);
            if (bytes < min || bytes > max)
                throw new VfioException(Errno.EINVAL, name, $"'{t}' is outside {Units.FormatExact(min)}..{Units.FormatExact(max)}");
            return bytes % multipleOf == 0
                ? new ByteSize(bytes)
                : throw new VfioException(Errno.EINVAL, name, $"'{t}' is not a multiple of {Units.FormatExact(multipleOf)}");
        }, defaultText, "SIZE");

    public static Option<ByteRate> DirtyRate(string defaultText)
        => Parsed("--dirty-rate", "Bytes per second the device's workload dirties while it runs (e.g. 16MiB/s; 0 = idle)", t => new ByteRate(Units.ParseRate(t, "dirty-rate")), defaultText, "RATE");

    public static Option<Caps> Caps(string defaultText, string description = "Migration capabilities: 0x1 STOP_COPY, 0x3 +P2P, 0x5 +PRE_COPY, 0x7 all")
        => Parsed("--caps", description, t => new Caps(Units.ParseCaps(t)), defaultText, "CAPS");

    public static Option<Duration> Duration(string name, string description, string defaultText)
        => Parsed(name, description, t => new Duration(Units.ParseDuration(t, name[2..])), defaultText, "DURATION");

    public static Option<Duration> DowntimeLimit() => Duration("--downtime-limit", "Allowed downtime; pre-copy switches over when what is pending fits in it", "300ms");

    public static Option<bool> NoCompatCheck() => new("--no-compat-check") { Description = "Skip the pre-flight compatibility check of the source's profile against the destination's (docs/compatibility.md)" };

    public static Option<bool> ForceSwitchover() => new("--force-switchover") { Description = "Switch over anyway when pre-copy does not converge (default: fail, the source keeps running)" };

    /// <summary><c>--connect-timeout</c>: the longest wait for a device's (or peer's) connect and handshake.</summary>
    public static Option<Duration> ConnectTimeout()
        => Duration("--connect-timeout", "Longest wait for connecting to a device or peer and its handshake (a busy vfio-user server is reported after it)", "10s");

    public static Option<int> Int(string name, string description, int defaultValue, int min, int max)
        => Parsed(name, description, t => Units.ParseInt(t, name[2..], min, max), defaultValue.ToString(CultureInfo.InvariantCulture), "N");

    /// <summary>
    /// A device address option, checked while parsing; its description is <paramref name="role"/> and the forms of
    /// every registered transport (<see cref="DeviceTransports"/>).
    /// </summary>
    public static Option<DeviceAddress> Device(string name, string role)
        => new(name) { Description = DeviceTransports.Describe(role), Required = true, HelpName = "ADDRESS", CustomParser = r => Parse(r, DeviceAddress.Parse, null) };

    /// <summary>Validator: <paramref name="from"/> and <paramref name="to"/> name different devices (<paramref name="why"/> ends the error).</summary>
    public static void RequireDifferentDevices(Command command, Option<DeviceAddress> from, Option<DeviceAddress> to, string why)
        => command.Validators.Add(r =>
        {
            if (r.ReferenceOrNull(from) is { } a && r.ReferenceOrNull(to) is { } b && a.SameDeviceAs(b))
                r.AddError($"--from and --to name the same device ({a}){why}");
        });

    /// <summary>A device address argument, described like <see cref="Device"/> (only the transports whose devices outlive a process when <paramref name="outlivingProcessOnly"/>).</summary>
    public static Argument<DeviceAddress?> DeviceArgument(string role, bool optional = false, bool outlivingProcessOnly = false)
        => new("device")
        {
            Description = DeviceTransports.Describe(role, outlivingProcessOnly),
            HelpName = "ADDRESS",
            Arity = optional ? ArgumentArity.ZeroOrOne : ArgumentArity.ExactlyOne,
            CustomParser = r => r.Tokens.Count == 0 ? null : Parse(r, DeviceAddress.Parse, null),
        };

    /// <summary>
    /// The value of <paramref name="option"/> in a validator, or null when it was not given (its default is not
    /// read here) or itself failed to parse (its own error is reported; reading it would throw).
    /// </summary>
    public static T? ValueOrNull<T>(this System.CommandLine.Parsing.CommandResult result, Option<T> option)
        where T : struct
    {
        if (result.GetResult(option) is not { Implicit: false })
            return null;
        try
        {
            return result.GetValue(option);
        }
        catch (InvalidOperationException)
        {
            return null;
        }
    }

    /// <inheritdoc cref="ValueOrNull{T}(System.CommandLine.Parsing.CommandResult, Option{T})"/>
    public static T? ReferenceOrNull<T>(this System.CommandLine.Parsing.CommandResult result, Option<T> option)
        where T : class
    {
        try
        {
            return result.GetValue(option);
        }
        catch (InvalidOperationException)
        {
            return null;
        }
    }

    private static Option<T> Parsed<T>(string name, string description, Func<string, T> parse, string? defaultText, string helpName)
    {
        var option = new Option<T>(name) { Description = description, HelpName = helpName, CustomParser = r => Parse(r, parse, defaultText) };
        if (defaultText is not null)
            option.DefaultValueFactory = _ => parse(defaultText);
        return option;
    }

    private static T Parse<T>(ArgumentResult result, Func<string, T> parse, string? defaultText)
    {
        string? text = result.Tokens.Count > 0 ? result.Tokens[^1].Value : defaultText;
        if (text is null)
            return default!;
        try
        {
            return parse(text);
        }
        catch (VfioException e)
        {
            result.AddError(e.Message);
            return default!;
        }
    }
}
