using System.Net.Security;
using System.Security.Cryptography.X509Certificates;

namespace Vfio.Net;

using Stream = System.IO.Stream;

/// <summary>TLS set-up for both sides: server auth always, client auth when the receiver has a client CA.</summary>
internal static class NetTls
{
    public static async Task<SslStream> AuthenticateClientAsync(Stream inner, string targetHost, NetSecurityOptions security, CancellationToken cancellationToken)
    {
        string? problem = null;
        var ssl = new SslStream(inner, leaveInnerStreamOpen: false);
        var options = new SslClientAuthenticationOptions
        {
            TargetHost = targetHost,
            RemoteCertificateValidationCallback = (_, cert, chain, errors) => Validate(cert, errors, security.TrustedCertificates, checkName: true, "receiver", out problem),
        };
        if (security.Certificate is { } mine)
            options.ClientCertificates = [mine];
        try
        {
            await ssl.AuthenticateAsClientAsync(options, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or System.Security.Authentication.AuthenticationException)
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
            ClientCertificateRequired = mutual,
            RemoteCertificateValidationCallback = (_, cert, chain, errors) =>
                !mutual || Validate(cert, errors, security.TrustedCertificates, checkName: false, "sender", out problem),
        };
        try
        {
            await ssl.AuthenticateAsServerAsync(options, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or System.Security.Authentication.AuthenticationException)
        {
            await ssl.DisposeAsync().ConfigureAwait(false);
            throw new VfioException(Errno.EACCES, $"TLS handshake with {peer}", problem ?? ("TLS failed: " + e.Message), e);
        }
        return ssl;
    }

    private static bool Validate(X509Certificate? certificate, SslPolicyErrors errors, X509Certificate2Collection? trusted, bool checkName, string who, out string? problem)
    {
        problem = null;
        if (certificate is null)
        {
            problem = $"the {who} presented no certificate" + (who == "sender" ? ": give the sender --tls-cert and --tls-key (this receiver requires mutual TLS)" : "");
            return false;
        }
        if (checkName && errors.HasFlag(SslPolicyErrors.RemoteCertificateNameMismatch))
        {
            problem = $"the {who}'s certificate does not name the host we connected to";
            return false;
        }
        if (trusted is not { Count: > 0 })
        {
            if ((errors & ~SslPolicyErrors.RemoteCertificateNameMismatch) == SslPolicyErrors.None)
                return true;
            problem = $"the {who}'s certificate is not trusted by the system store ({errors}): give --tls-ca";
            return false;
        }
        using var cert = new X509Certificate2(certificate);
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.AddRange(trusted);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        if (chain.Build(cert))
            return true;
        string status = string.Join(", ", chain.ChainStatus.Select(s => s.Status.ToString()));
        problem = $"the {who}'s certificate does not chain to the given CA ({status})";
        return false;
    }
}
