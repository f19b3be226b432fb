using System.Security.Cryptography.X509Certificates;

namespace Vfio.Net;

/// <summary>
/// How one side authenticates the other and how long it waits. A side without TLS must have a
/// <see cref="Token"/> unless <see cref="Insecure"/> is set explicitly.
/// </summary>
public sealed record NetSecurityOptions
{
    /// <summary>Plain TCP with nothing checked (must be asked for explicitly).</summary>
    public static NetSecurityOptions InsecureDefault { get; } = new() { Insecure = true };

    /// <summary>The pre-shared token (a random key of at least 128 bits, see <see cref="NetToken"/>), or null.</summary>
    public NetToken? Token { get; init; }

    /// <summary>Use TLS. The receiver needs <see cref="Certificate"/>; the sender needs <see cref="TrustedCertificates"/> (or the system store).</summary>
    public bool UseTls { get; init; }

    /// <summary>Receiver: its server certificate with private key. Sender: its client certificate for mutual TLS, or null.</summary>
    public X509Certificate2? Certificate { get; init; }

    /// <summary>Sender: the CA(s) the receiver's certificate must chain to. Receiver: the CA(s) a client certificate must chain to (mutual TLS), or null.</summary>
    public X509Certificate2Collection? TrustedCertificates { get; init; }

    /// <summary>Explicitly allow plain TCP without a token.</summary>
    public bool Insecure { get; init; }

    /// <summary>Longest wait for a TCP connect (sender). Default 10 s.</summary>
    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Longest wait for TLS + hello/challenge/proof/verdict on one connection. Default 10 s.</summary>
    public TimeSpan HandshakeTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// A peer that sends nothing at all (not even a keepalive) for this long is stalled: the migration fails
    /// with ETIMEDOUT. Keepalives go out every third of it. Default 15 s.
    /// </summary>
    public TimeSpan IdleTimeout { get; init; } = TimeSpan.FromSeconds(15);

    /// <summary>Throws EINVAL when the combination would leave the link unauthenticated without consent.</summary>
    public void Validate(string side)
    {
        if (!UseTls && Token is null && !Insecure)
            throw new VfioException(Errno.EACCES, side, "refusing an unauthenticated plain-TCP link: give TLS (--tls-cert/--tls-key or --tls-ca), a pre-shared token (--token-file), or --insecure explicitly");
        if (IdleTimeout <= TimeSpan.Zero || HandshakeTimeout <= TimeSpan.Zero || ConnectTimeout <= TimeSpan.Zero)
            throw new VfioException(Errno.EINVAL, side, "timeouts must be positive");
    }
}
