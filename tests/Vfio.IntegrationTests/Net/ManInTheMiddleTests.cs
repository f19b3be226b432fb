using System.Net;
using Vfio.Engine;
using Vfio.Migration;
using Vfio.Net;
using Vfio.Sample;

namespace Vfio.IntegrationTests.Net;

/// <summary>
/// docs/security.md: a relay between sender and receiver rewrites one frame of device data (and fixes every
/// checksum it can). Every mode but --insecure must make both sides fail in the transport and leave the destination
/// unapplied; with --insecure the change passes the transport and reaches the destination device.
/// </summary>
public sealed class ManInTheMiddleTests
{
    private static readonly TimeSpan s_limit = TimeSpan.FromSeconds(90);

    public enum Mode
    {
        Token,
        MutualTls,
        MutualTlsAndToken,
        Insecure,
    }

    [Theory]
    [InlineData(Mode.Token)]
    [InlineData(Mode.MutualTls)]
    [InlineData(Mode.MutualTlsAndToken)]
    [InlineData(Mode.Insecure)]
    public async Task RewrittenFrame_BothSidesFail_InEveryModeButInsecure(Mode mode)
    {
        using var certs = new TestCertificates();
        var token = NetToken.New();
        var timeouts = new NetSecurityOptions { IdleTimeout = TimeSpan.FromSeconds(10), HandshakeTimeout = TimeSpan.FromSeconds(10) };
        var (send, receive) = mode switch
        {
            Mode.Token => (timeouts with { Token = token }, timeouts with { Token = token }),
            Mode.MutualTls => (timeouts with { UseTls = true, TrustedCertificates = [certs.Ca], Certificate = certs.Client },
                               timeouts with { UseTls = true, Certificate = certs.Server, TrustedCertificates = [certs.Ca] }),
            Mode.MutualTlsAndToken => (timeouts with { UseTls = true, TrustedCertificates = [certs.Ca], Certificate = certs.Client, Token = token },
                                       timeouts with { UseTls = true, Certificate = certs.Server, TrustedCertificates = [certs.Ca], Token = token }),
            _ => (timeouts with { Insecure = true }, timeouts with { Insecure = true }),
        };
        var options = new SampleDeviceOptions { SizeBytes = 8 << 20 };
        using var sourceDevice = new SampleDevice(options with { Seed = 1 });
        using var destinationDevice = new SampleDevice(options with { Seed = 2 });
        await using var source = new InProcessMigrationDevice(sourceDevice, "sample:source");
        await using var destination = new InProcessMigrationDevice(destinationDevice, "sample:destination");
        await using var listener = NetListener.Bind("127.0.0.1", 0);
        // On plain TCP the relay reads and rewrites frames; inside TLS it can only change a byte of a record.
        await using var relay = mode is Mode.Token or Mode.Insecure ? new RewritingRelay(listener.LocalEndPoint, sealedFrames: mode != Mode.Insecure) : null;
        await using var proxy = relay is null ? new FaultProxy(listener.LocalEndPoint, ProxyFault.Corrupt, connection: 0, offset: 600_000) : null;
        int port = relay?.Port ?? proxy!.Port;
        bool applied = false;
        var receiveSide = Task.Run(async () =>
        {
            await using var session = await listener.AcceptSessionAsync(receive);
            return await NetMigration.ReceiveAsync(session, [destination], MigrationOptions.Default,
                _ => ValueTask.FromResult(new NetDigest(destinationDevice.ComputeSha256(), "bar0", "")), committed: () => applied = true);
        });
        var sendSide = Task.Run(async () =>
        {
            await using var sender = await NetSenderSession.ConnectAsync("127.0.0.1", port, 1, send);
            return await NetMigration.SendAsync(sender, [source], MigrationOptions.Default with { UsePreCopy = false },
                _ => ValueTask.FromResult(new NetDigest(sourceDevice.ComputeSha256(), "bar0", "")));
        });

        if (mode == Mode.Insecure)
        {
            // The transport notices nothing: the rewritten frame is handed to the destination device. Only the
            // device's own record checksum catches this relay; an attacker who also fixes that one (as the project's
            // security review did) changes the state undetected until the final digests, which it can rewrite too.
            var error = await Assert.ThrowsAnyAsync<Exception>(() => receiveSide.WaitAsync(s_limit));
            await Assert.ThrowsAnyAsync<Exception>(() => sendSide.WaitAsync(s_limit));
            Assert.True(relay!.Rewrote && relay.FixedStreamCrc);
            Assert.DoesNotContain("failed authentication", error.Message, StringComparison.Ordinal);
            Assert.Contains("record 1 is corrupt", error.Message, StringComparison.Ordinal);
            return;
        }
        var r = await Assert.ThrowsAnyAsync<Exception>(() => receiveSide.WaitAsync(s_limit));
        var s = await Assert.ThrowsAnyAsync<Exception>(() => sendSide.WaitAsync(s_limit));
        Assert.True(relay?.Rewrote ?? proxy!.Triggered);
        Assert.False(applied, "the destination must never run state that was changed in transit");
        if (mode == Mode.Token)
        {
            // The receiver detects it; which side's message names it first depends on who fails first.
            Assert.Contains("failed authentication", r.Message + " | " + s.Message, StringComparison.Ordinal);
        }
        Assert.NotEqual(sourceDevice.ComputeSha256(), destinationDevice.ComputeSha256());
    }
}
