using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Vfio.Net;

using Stream = System.IO.Stream;

/// <summary>
/// TLS set-up for both sides: TLS 1.2 or 1.3 only (1.3 preferred by the platform), server auth always, client auth
/// when the receiver has a client CA. Every peer chain is built here: trust anchor, extended key usage (serverAuth
/// for the receiver, clientAuth for the sender, the extension required) and revocation (<see cref="NetSecurityOptions.Revocation"/>).
/// </summary>
internal static class NetTls
{
    /// <summary>The protocol versions offered and accepted.</summary>
    public const SslProtocols Protocols = SslProtocols.Tls13 | SslProtocols.Tls12;

    private const string ServerAuthOid = "1.3.6.1.5.5.7.3.1";
    private const string ClientAuthOid = "1.3.6.1.5.5.7.3.2";
    private const string CrlDistributionPointsOid = "2.5.29.31";
    private const string AuthorityInfoAccessOid = "1.3.6.1.5.5.7.1.1";

    public static async Task<SslStream> AuthenticateClientAsync(Stream inner, string targetHost, NetSecurityOptions security, CancellationToken cancellationToken)
    {
        string? problem = null;
        var ssl = new SslStream(inner, leaveInnerStreamOpen: false);
        var options = new SslClientAuthenticationOptions
        {
            TargetHost = targetHost,
            EnabledSslProtocols = Protocols,
            CertificateRevocationCheckMode = X509RevocationMode.NoCheck, // checked in Validate, with our trust anchors
            RemoteCertificateValidationCallback = (_, cert, _, errors) => Validate(cert, errors, security, server: true, out problem),
        };
        if (security.Certificate is { } mine)
            options.ClientCertificates = [mine];
        try
        {
            await ssl.AuthenticateAsClientAsync(options, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or AuthenticationException)
        {
            await ssl.DisposeAsync().ConfigureAwait(false);
            throw new VfioException(Errno.EACCES, $"TLS handshake with {targetHost}", problem ?? ("TLS failed: " + e.Message + (e.InnerException is { } i ? " (" + i.Message + ")" : "") + "; the receiver may not use TLS, or it rejected our client certificate"), e);
        }
        return ssl;
    }

    public static async Task<SslStream> AuthenticateServerAsync(Stream inner, string peer, NetSecurityOptions security, CancellationToken cancellationToken)
    {
        string? problem = null;
        var ssl = new SslStream(inner, leaveInnerStreamOpen: false);
        bool mutual = security.TrustedCertificates is { Count: > 0 };
        var options = new SslServerAuthenticationOptions
        {
            ServerCertificate = security.Certificate ?? throw new VfioException(Errno.EINVAL, "TLS", "the receiver needs --tls-cert and --tls-key"),
            EnabledSslProtocols = Protocols,
            ClientCertificateRequired = mutual,
            CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
            RemoteCertificateValidationCallback = (_, cert, _, errors) =>
                !mutual || Validate(cert, errors, security, server: false, out problem),
        };
        try
        {
            await ssl.AuthenticateAsServerAsync(options, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or AuthenticationException)
        {
            await ssl.DisposeAsync().ConfigureAwait(false);
            throw new VfioException(Errno.EACCES, $"TLS handshake with {peer}", problem ?? ("TLS failed: " + e.Message), e);
        }
        return ssl;
    }

    /// <summary>
    /// What binds the handshake's proofs and keys to the TLS connection: SHA-256 of the receiver's certificate as
    /// the sender saw it (the idea of RFC 5929 tls-server-end-point); empty without TLS.
    /// </summary>
    public static byte[] Binding(X509Certificate? receiverCertificate)
        => receiverCertificate is null ? [] : SHA256.HashData(receiverCertificate.GetRawCertData());

    private static bool Validate(X509Certificate? certificate, SslPolicyErrors errors, NetSecurityOptions security, bool server, out string? problem)
    {
        string who = server ? "receiver" : "sender";
        problem = null;
        if (certificate is null)
        {
            problem = $"the {who} presented no certificate" + (server ? "" : ": give the sender --tls-cert and --tls-key (this receiver requires mutual TLS)");
            return false;
        }
        if (server && errors.HasFlag(SslPolicyErrors.RemoteCertificateNameMismatch))
        {
            problem = $"the {who}'s certificate does not name the host we connected to";
            return false;
        }
        using var cert = new X509Certificate2(certificate);
        string oid = server ? ServerAuthOid : ClientAuthOid;
        var eku = cert.Extensions.OfType<X509EnhancedKeyUsageExtension>().FirstOrDefault();
        if (eku is null || !eku.EnhancedKeyUsages.Cast<Oid>().Any(o => o.Value == oid))
        {
            problem = $"the {who}'s certificate is not for TLS {(server ? "servers" : "clients")}: its extended key usage must name {(server ? "serverAuth" : "clientAuth")} ({oid})";
            return false;
        }
        using var chain = new X509Chain();
        var trusted = security.TrustedCertificates;
        if (trusted is { Count: > 0 })
        {
            chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
            chain.ChainPolicy.CustomTrustStore.AddRange(trusted);
        }
        chain.ChainPolicy.ApplicationPolicy.Add(new Oid(oid));
        chain.ChainPolicy.RevocationMode = security.Revocation;
        chain.ChainPolicy.RevocationFlag = X509RevocationFlag.ExcludeRoot;
        chain.ChainPolicy.UrlRetrievalTimeout = TimeSpan.FromSeconds(Math.Min(5, security.HandshakeTimeout.TotalSeconds / 2));
        if (chain.Build(cert))
            return true;
        const X509ChainStatusFlags unknown = X509ChainStatusFlags.RevocationStatusUnknown | X509ChainStatusFlags.OfflineRevocation;
        var flags = chain.ChainStatus.Aggregate(X509ChainStatusFlags.NoError, (a, s) => a | s.Status);
        if ((flags & ~unknown) == X509ChainStatusFlags.NoError && !PublishesRevocation(chain))
            return true; // nothing to check against: no certificate in the chain names a CRL or an OCSP responder
        string status = string.Join(", ", chain.ChainStatus.Select(s => s.Status.ToString()));
        problem = (flags & ~unknown) == X509ChainStatusFlags.NoError
            ? $"the {who}'s certificate revocation status could not be determined ({status}, --revocation {Name(security.Revocation)})"
            : (flags & X509ChainStatusFlags.Revoked) != 0
                ? $"the {who}'s certificate is revoked"
                : trusted is { Count: > 0 }
                    ? $"the {who}'s certificate does not chain to the given CA ({status})"
                    : $"the {who}'s certificate is not trusted by the system store ({status}): give --tls-ca";
        return false;
    }

    private static bool PublishesRevocation(X509Chain chain)
    {
        for (int i = 0; i < chain.ChainElements.Count - 1; i++)
        {
            foreach (var ext in chain.ChainElements[i].Certificate.Extensions)
            {
                if (ext.Oid?.Value is CrlDistributionPointsOid or AuthorityInfoAccessOid)
                    return true;
            }
        }
        return false;
    }

    /// <summary>The CLI name of a revocation mode.</summary>
    public static string Name(X509RevocationMode mode) => mode switch
    {
        X509RevocationMode.Online => "online",
        X509RevocationMode.Offline => "offline",
        _ => "none",
    };
}
