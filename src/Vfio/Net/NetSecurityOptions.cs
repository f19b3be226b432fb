using System.Security.Cryptography.X509Certificates;

namespace Vfio.Net;

/// <summary>
/// How one side authenticates the other and how long it waits. A side without TLS must have a
/// <see cref="Token"/> unless <see cref="Insecure"/> is set explicitly; a receiver must authenticate its sender
/// (token or client certificate) unless <see cref="AllowAnonymousSenders"/> is set explicitly.
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

    /// <summary>Explicitly allow plain TCP without a token: frames are then neither authenticated nor encrypted.</summary>
    public bool Insecure { get; init; }

    /// <summary>Receiver: explicitly accept a TLS sender with neither a token nor a client certificate.</summary>
    public bool AllowAnonymousSenders { get; init; }

    /// <summary>
    /// How a peer certificate's revocation is checked. <see cref="X509RevocationMode.Online"/> (default): the CRLs
    /// and OCSP responders the chain names are consulted, fetched if need be (at most 5 s); <see cref="X509RevocationMode.Offline"/>:
    /// only what this host has cached; either way a revoked certificate, or one whose status cannot be determined
    /// although its chain names where to look, is refused. A chain that names no CRL or OCSP responder (a private
    /// CA without them) has nothing to check and is accepted. <see cref="X509RevocationMode.NoCheck"/> skips the check.
    /// </summary>
    public X509RevocationMode Revocation { get; init; } = X509RevocationMode.Online;

    /// <summary>True when every frame is sealed (AES-256-GCM with session keys): with TLS or a token, i.e. unless --insecure.</summary>
    public bool SealsFrames => UseTls || Token is not null;

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
        if (Insecure && (UseTls || Token is not null))
            throw new VfioException(Errno.EINVAL, side, "--insecure is for plain TCP without a token only; drop it (TLS and tokens always protect every frame)");
        if (IdleTimeout <= TimeSpan.Zero || HandshakeTimeout <= TimeSpan.Zero || ConnectTimeout <= TimeSpan.Zero)
            throw new VfioException(Errno.EINVAL, side, "timeouts must be positive");
    }

    /// <summary>
    /// <see cref="Validate"/> for a receiver, which must also know who its sender is: a token, a client CA, or
    /// the explicit <see cref="AllowAnonymousSenders"/> (TLS only; plain TCP needs --insecure for that).
    /// </summary>
    public void ValidateReceiver()
    {
        const string side = "receive";
        Validate(side);
        if (UseTls && Token is null && TrustedCertificates is not { Count: > 0 } && !AllowAnonymousSenders)
            throw new VfioException(Errno.EACCES, side, "refusing to accept any sender: with TLS alone the receiver does not know who sends; give --client-ca (mutual TLS), a --token-file, or --allow-anonymous-senders explicitly");
    }
}
