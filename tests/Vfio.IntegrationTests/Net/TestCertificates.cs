using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Vfio.IntegrationTests.Net;

/// <summary>A throw-away CA and leaf certificates made in process, with PEM files for the CLI.</summary>
internal sealed class TestCertificates : IDisposable
{
    public TestCertificates(string? directory = null)
    {
        Directory = directory ?? Path.Combine(Path.GetTempPath(), "vfio-net-certs-" + Guid.NewGuid().ToString("N")[..8]);
        System.IO.Directory.CreateDirectory(Directory);
        using var caKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var caReq = new CertificateRequest("CN=vfio-mig test CA", caKey, HashAlgorithmName.SHA256);
        caReq.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        caReq.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        Ca = caReq.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddDays(1));
        CaPath = Write("ca.pem", Ca.ExportCertificatePem());

        (Server, ServerCertPath, ServerKeyPath) = Leaf("server", Ca, caKey, serverAuth: true);
        (Client, ClientCertPath, ClientKeyPath) = Leaf("client", Ca, caKey, serverAuth: false);

        using var otherKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var otherReq = new CertificateRequest("CN=some other CA", otherKey, HashAlgorithmName.SHA256);
        otherReq.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        OtherCa = otherReq.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddDays(1));
        OtherCaPath = Write("other-ca.pem", OtherCa.ExportCertificatePem());
    }

    public string Directory { get; }
    public X509Certificate2 Ca { get; }
    public X509Certificate2 OtherCa { get; }
    public X509Certificate2 Server { get; }
    public X509Certificate2 Client { get; }
    public string CaPath { get; }
    public string OtherCaPath { get; }
    public string ServerCertPath { get; }
    public string ServerKeyPath { get; }
    public string ClientCertPath { get; }
    public string ClientKeyPath { get; }

    private (X509Certificate2, string, string) Leaf(string name, X509Certificate2 ca, ECDsa caKey, bool serverAuth)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var req = new CertificateRequest($"CN=vfio-mig test {name}", key, HashAlgorithmName.SHA256);
        req.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, false));
        req.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true));
        req.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid(serverAuth ? "1.3.6.1.5.5.7.3.1" : "1.3.6.1.5.5.7.3.2")], false));
        var san = new SubjectAlternativeNameBuilder();
        san.AddDnsName("localhost");
        san.AddIpAddress(IPAddress.Loopback);
        san.AddIpAddress(IPAddress.Parse("10.213.0.1"));
        san.AddIpAddress(IPAddress.Parse("10.213.0.2"));
        req.CertificateExtensions.Add(san.Build());
        byte[] serial = RandomNumberGenerator.GetBytes(12);
        serial[0] &= 0x7F;
        using var issued = req.Create(ca.SubjectName, X509SignatureGenerator.CreateForECDsa(caKey), DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddDays(1), serial);
        string certPath = Write(name + ".pem", issued.ExportCertificatePem());
        string keyPath = Write(name + ".key", key.ExportPkcs8PrivateKeyPem());
        return (X509Certificate2.CreateFromPemFile(certPath, keyPath), certPath, keyPath);
    }

    private string Write(string name, string text)
    {
        string path = Path.Combine(Directory, name);
        File.WriteAllText(path, text);
        return path;
    }

    public void Dispose()
    {
        Ca.Dispose();
        OtherCa.Dispose();
        Server.Dispose();
        Client.Dispose();
        try
        {
            System.IO.Directory.Delete(Directory, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
