using System.Globalization;
using Microsoft.Extensions.Logging;
using Vfio.Migration;
using Vfio.Sample;
using Vfio.User.Client;
using Vfio.User.Server;

namespace Vfio.Cli;

/// <summary>
/// A device named on the command line: <c>SCHEME:TARGET</c>, the scheme one of <see cref="DeviceTransports.All"/>
/// (<c>sample:[KEY=VALUE,...]</c>, <c>unix:PATH</c>, <c>vfio:NAME</c>). The target is checked by its transport when
/// the address is parsed (the sample keys like the matching options).
/// </summary>
internal sealed record DeviceAddress(string Scheme, string Target)
{
    /// <summary>The transport this address names.</summary>
    public DeviceTransport Transport => DeviceTransports.Find(Scheme) ?? throw new VfioException(Errno.EOPNOTSUPP, $"open {this}", $"the {Scheme}: transport is not available in this build");

    public override string ToString() => $"{Scheme}:{Target}";

    /// <summary>Parses an address; throws <see cref="VfioException"/> (EINVAL) with a plain-words reason.</summary>
    public static DeviceAddress Parse(string text)
    {
        int colon = text.IndexOf(':', StringComparison.Ordinal);
        string scheme = colon < 0 ? text : text[..colon];
        string target = colon < 0 ? "" : text[(colon + 1)..];
        if (DeviceTransports.Find(scheme) is not { } transport)
        {
            string why = scheme == "tcp" ? "a tcp:// address is a receiver (vfio-mig send --to), not a device" : "use " + DeviceTransports.Forms();
            throw new VfioException(Errno.EINVAL, "device address", $"'{text}' is not a device address; {why}");
        }
        if (transport.TargetNoun is { } noun && target.Length == 0)
            throw new VfioException(Errno.EINVAL, "device address", $"'{text}' names no {noun}");
        transport.Check(target);
        return new DeviceAddress(scheme, target);
    }

    /// <summary>True when both name the same external device (two <c>sample:</c> addresses are two devices).</summary>
    public bool SameDeviceAs(DeviceAddress other) => Scheme == other.Scheme && Transport.SameDevice(Target, other.Target);

    /// <summary>
    /// Opens the device for the user side. A vfio-user connection must connect and finish its handshake within
    /// <paramref name="connectTimeout"/>; a server that accepts but does not answer is reported busy (EBUSY).
    /// </summary>
    public ValueTask<IVfioMigrationDevice> OpenAsync(TimeSpan connectTimeout, CancellationToken cancellationToken = default)
        => Transport.Open(this, connectTimeout, null, cancellationToken);

    /// <summary>Opens the device as above; the transport logs to <paramref name="loggerFactory"/> (a command's <c>--verbose</c>).</summary>
    public ValueTask<IVfioMigrationDevice> OpenAsync(TimeSpan connectTimeout, ILoggerFactory? loggerFactory, CancellationToken cancellationToken)
        => Transport.Open(this, connectTimeout, loggerFactory, cancellationToken);

    /// <summary>Opens the device with the default connect timeout (10 s).</summary>
    public ValueTask<IVfioMigrationDevice> OpenAsync(CancellationToken cancellationToken = default)
        => OpenAsync(CliOptions.DefaultConnectTimeout, cancellationToken);

    /// <summary>
    /// Connects a vfio-user client to <see cref="Target"/> within <paramref name="connectTimeout"/>; names a missing
    /// path, a file that is not a socket, and a server that does not answer, instead of a bare errno.
    /// </summary>
    public async Task<VfioUserClient> ConnectUnixAsync(TimeSpan connectTimeout, ILoggerFactory? loggerFactory, CancellationToken cancellationToken)
    {
        CheckSocketPath(Target, $"connect {this}");
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(connectTimeout);
        try
        {
            var options = loggerFactory is null ? null : VfioUserClientOptions.Default with { LoggerFactory = loggerFactory };
            return await VfioUserClient.ConnectAsync(Target, options, deadline.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            throw new CliException(ExitCodes.Failed, Errno.EBUSY, $"connect {this}",
                string.Create(CultureInfo.InvariantCulture, $"the server accepted the connection but did not answer the vfio-user handshake within {connectTimeout.TotalSeconds:0.###} s: it is busy (a vfio-user server serves one client at a time) or stuck"),
                ["is another vfio-mig command (migrate, info, check) connected to it? --connect-timeout sets the wait"]);
        }
        catch (VfioException e) when (e.Errno == Errno.ECONNREFUSED)
        {
            throw new CliException(ExitCodes.Failed, Errno.ECONNREFUSED, $"connect {this}", "no server is listening on this socket (a stale socket file)",
                ["start one: vfio-mig serve --socket " + Target]);
        }
    }

    /// <summary>ENOENT for a missing path; EINVAL (usage) for a path that is not a socket.</summary>
    public static void CheckSocketPath(string path, string operation)
    {
        if (!File.Exists(path) && !Directory.Exists(path))
            throw new CliException(ExitCodes.Failed, Errno.ENOENT, operation, $"{path} does not exist", ["start a server first: vfio-mig serve --socket " + path]);
        if (!VfioUserServer.IsSocket(path))
            throw new CliException(ExitCodes.Usage, Errno.EINVAL, operation, $"{path} is not a socket (ENOTSOCK): a unix: address names a vfio-user server's socket");
    }

    /// <summary>The sample keys, each checked like its option (<c>size</c> like <c>--size</c>, …).</summary>
    public static SampleDeviceOptions ParseSampleOptions(string text, SampleDeviceOptions? defaults = null)
    {
        var options = defaults ?? SampleDeviceOptions.Default;
        foreach (var pair in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            int eq = pair.IndexOf('=', StringComparison.Ordinal);
            string key = eq < 0 ? pair : pair[..eq], value = eq < 0 ? "" : pair[(eq + 1)..];
            options = key switch
            {
                "size" => options with { SizeBytes = Units.ParseDeviceSize(value, "size") },
                "caps" => options with { Capabilities = Units.ParseCaps(value) },
                "dirty-rate" => options with { DirtyRateBytesPerSecond = Units.ParseRate(value, "dirty-rate") },
                "seed" => options with { Seed = Units.ParseInt(value, "seed", int.MinValue, int.MaxValue) },
                "fault" => options with { Faults = options.Faults | Units.ParseFaults(value, "fault") },
                "reinit-after" => options with { ReinitAfterBytes = Units.ParseReinitAfter(value, "reinit-after") },
                _ => throw new VfioException(Errno.EINVAL, "sample: address", $"unknown key '{key}' (size, caps, dirty-rate, seed, reinit-after, fault)"),
            };
        }
        return options;
    }
}
