using System.CommandLine;
using System.Globalization;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Vfio.Net;

namespace Vfio.Cli;

/// <summary>Options and parsing shared by <c>vfio-mig send</c>, <c>receive</c> and <c>bench tcp</c>.</summary>
internal static class NetCli
{
    public static Option<string?> TokenFile() => new("--token-file") { Description = "Pre-shared token file made by `vfio-mig token new` (mode 0600). Required without TLS unless --insecure" };

    public static Option<bool> Insecure() => new("--insecure") { Description = "Tests only: plain TCP without TLS or token; frames are neither authenticated nor encrypted" };

    public static Option<string> Revocation() => new("--revocation") { Description = "Peer certificate revocation check: online (fetch the CRL/OCSP the chain names, default), offline (cached only) or none", DefaultValueFactory = _ => "online" };

    /// <summary>Parses <c>--revocation</c>.</summary>
    public static System.Security.Cryptography.X509Certificates.X509RevocationMode ParseRevocation(string text) => text switch
    {
        "online" => System.Security.Cryptography.X509Certificates.X509RevocationMode.Online,
        "offline" => System.Security.Cryptography.X509Certificates.X509RevocationMode.Offline,
        "none" => System.Security.Cryptography.X509Certificates.X509RevocationMode.NoCheck,
        _ => throw new VfioException(Errno.EINVAL, "parse --revocation", $"'{text}' is not online, offline or none"),
    };

    /// <summary>The protection in words, for the connected/listening line; warns on stderr about the weak modes.</summary>
    public static string DescribeMode(NetSecurityOptions security, bool receiver, string side)
    {
        bool certs = receiver ? security.TrustedCertificates is not null : security.Certificate is not null;
        string mode = security.UseTls ? (certs ? "mutual TLS" : "TLS") + (security.Token is null ? "" : " + token") : security.Token is not null ? "token, sealed frames" : "INSECURE plain TCP";
        if (!security.SealsFrames)
            Console.Error.WriteLine($"vfio-mig {side}: warning: --insecure: nothing is authenticated or encrypted; anyone on the path can read and change the device state (for tests only)");
        else if (receiver && security.AllowAnonymousSenders && security.Token is null && security.TrustedCertificates is null)
            Console.Error.WriteLine($"vfio-mig {side}: warning: --allow-anonymous-senders: any host that reaches this port can write the destination device's state");
        return mode;
    }

    public static Option<Duration> IdleTimeout() => CliOptions.Duration("--idle-timeout", "Fail when the peer sends nothing (not even a keepalive) for this long", "15s");

    public static Option<Duration> HandshakeTimeout() => CliOptions.Duration("--handshake-timeout", "Longest wait for TLS + hello on one connection", "10s");

    /// <summary>An endpoint option checked while parsing (<see cref="ParseEndpoint"/>).</summary>
    public static Option<(string Host, int Port)> Endpoint(string name, string description, bool requireScheme) => new(name)
    {
        Description = description,
        Required = true,
        HelpName = requireScheme ? "tcp://HOST:PORT" : "HOST:PORT",
        CustomParser = r =>
        {
            try
            {
                return ParseEndpoint(r.Tokens[^1].Value, name, requireScheme);
            }
            catch (VfioException e)
            {
                r.AddError(e.Message);
                return default;
            }
        },
    };

    /// <summary>Adds the rule that <paramref name="cert"/> and <paramref name="key"/> are given together.</summary>
    public static void RequireTogether(Command command, Option<string?> cert, Option<string?> key)
        => command.Validators.Add(r =>
        {
            if (r.GetValue(cert) is null != (r.GetValue(key) is null))
                r.AddError($"{cert.Name} and {key.Name} go together");
        });

    /// <summary>Parses <c>tcp://HOST:PORT</c>, <c>HOST:PORT</c>, <c>[v6]:PORT</c>.</summary>
    public static (string Host, int Port) ParseEndpoint(string text, string what, bool requireScheme)
    {
        string rest = text;
        if (rest.StartsWith("tcp://", StringComparison.OrdinalIgnoreCase))
            rest = rest[6..];
        else if (requireScheme)
            throw new VfioException(Errno.EINVAL, what, $"'{text}' is not a tcp:// address (write tcp://HOST:PORT)");
        rest = rest.TrimEnd('/');
        int colon = rest.LastIndexOf(':');
        if (colon <= 0 || !int.TryParse(rest[(colon + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out int port) || port is < 0 or > 65535)
            throw new VfioException(Errno.EINVAL, what, $"'{text}' has no valid port (write HOST:PORT, e.g. 10.213.0.2:7400)");
        string host = rest[..colon];
        if (host.StartsWith('[') && host.EndsWith(']'))
            host = host[1..^1];
        return (host, port);
    }

    public static X509Certificate2 LoadCertificate(string certPath, string? keyPath, string what)
    {
        try
        {
            return X509Certificate2.CreateFromPemFile(certPath, keyPath);
        }
        catch (Exception e) when (e is CryptographicException or IOException or UnauthorizedAccessException or ArgumentException)
        {
            var errno = e is FileNotFoundException or DirectoryNotFoundException ? Errno.ENOENT : Errno.EINVAL;
            throw new VfioException(errno, $"load {what} {certPath}", "cannot load the PEM certificate/key: " + e.Message, e);
        }
    }

    public static X509Certificate2Collection LoadCa(string path, string what)
    {
        var collection = new X509Certificate2Collection();
        try
        {
            collection.ImportFromPemFile(path);
        }
        catch (Exception e) when (e is CryptographicException or IOException or UnauthorizedAccessException)
        {
            var errno = e is FileNotFoundException or DirectoryNotFoundException ? Errno.ENOENT : Errno.EINVAL;
            throw new VfioException(errno, $"load {what} {path}", "cannot load the PEM CA certificate(s): " + e.Message, e);
        }
        if (collection.Count == 0)
            throw new VfioException(Errno.EINVAL, $"load {what} {path}", "the file holds no PEM certificate");
        return collection;
    }

    public static string Hex(byte[] digest) => Convert.ToHexStringLower(digest);
}
