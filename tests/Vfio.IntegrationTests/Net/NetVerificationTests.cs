using Vfio.Engine;
using Vfio.Migration;
using Vfio.Net;
using Vfio.Sample;

namespace Vfio.IntegrationTests.Net;

/// <summary>
/// The final digest exchange: the Status frame carries what the destination digest covers, and the sender
/// compares only digests of the same kind. Different kinds end as "verification skipped" on both sides,
/// never as a mismatch.
/// </summary>
public sealed class NetVerificationTests
{
    private static readonly TimeSpan s_limit = TimeSpan.FromSeconds(60);
    private static readonly byte[] s_a = Enumerable.Repeat((byte)0xa1, 32).ToArray();
    private static readonly byte[] s_b = Enumerable.Repeat((byte)0xb2, 32).ToArray();

    [Fact]
    public void Status_RoundTrip_CarriesTheDigestKind()
    {
        var status = new NetStatus(true, 0, "running", s_a, "", "kernel-region0");
        var decoded = NetStatus.Decode(status.Encode());
        Assert.Equal("kernel-region0", decoded.DigestKind);
        Assert.Equal(s_a, decoded.Digest);
        Assert.Equal("running", decoded.Message);
    }

    [Fact]
    public void Status_FromAReceiverWithoutKinds_DecodesWithAnEmptyKind()
    {
        byte[] payload = new NetStatus(true, 0, "running", s_a, "note", "").Encode();
        // An older receiver's payload ends after the note: drop the empty kind's length byte.
        var decoded = NetStatus.Decode(payload.AsSpan(0, payload.Length - 1));
        Assert.Equal("", decoded.DigestKind);
        Assert.Equal("note", decoded.Note);
        Assert.Equal(s_a, decoded.Digest);
    }

    [Theory]
    // source digest, source kind, destination digest, destination kind, verdict
    [InlineData("a", "bar0", "a", "bar0", 1)]
    [InlineData("a", "bar0", "b", "bar0", 2)]
    [InlineData("a", "kernel-region0", "a", "kernel-region0", 1)]
    [InlineData("a", "kernel-region0", "b", "bar0", 3)]
    [InlineData("a", "kernel-region0", "a", "bar0", 3)]
    [InlineData("a", "", "a", "bar0", 1)]       // a sender without kinds: compared as before
    [InlineData("a", "bar0", "b", "", 2)]       // a receiver without kinds: compared as before
    [InlineData("", "", "a", "bar0", 0)]
    [InlineData("a", "bar0", "", "", 0)]
    public void Judge_ComparesOnlyDigestsOfTheSameKind(string source, string sourceKind, string destination, string destinationKind, int verdict)
    {
        var (v, note) = NetDigest.Judge(Digest(source, sourceKind), Digest(destination, destinationKind));
        Assert.Equal(verdict, v);
        if (verdict is 1 or 2)
            Assert.Equal("", note);
        else
            Assert.StartsWith("verification skipped: ", note, StringComparison.Ordinal);
        if (verdict == 3)
            Assert.Equal(NetDigest.NotComparable(sourceKind, destinationKind), note);
    }

    [Theory]
    [InlineData("bar0", "bar0", 1)]
    [InlineData("kernel-region0", "bar0", 3)]
    [InlineData("bar0", "kernel-region0", 3)]
    public async Task Migrate_OverLoopback_BothSidesAgreeOnTheVerdict(string sourceKind, string destinationKind, int verdict)
    {
        var security = new NetSecurityOptions { Token = NetToken.New(), IdleTimeout = TimeSpan.FromSeconds(5), HandshakeTimeout = TimeSpan.FromSeconds(5) };
        var options = new SampleDeviceOptions { SizeBytes = 4 << 20 };
        using var sourceDevice = new SampleDevice(options with { Seed = 1 });
        using var destinationDevice = new SampleDevice(options with { Seed = 2 });
        await using var source = new InProcessMigrationDevice(sourceDevice, "sample:source");
        await using var destination = new InProcessMigrationDevice(destinationDevice, "sample:destination");
        await using var listener = NetListener.Bind("127.0.0.1", 0);
        var receiveSide = Task.Run(async () =>
        {
            await using var session = await listener.AcceptSessionAsync(security);
            return await NetMigration.ReceiveAsync(session, [destination], MigrationOptions.Default, _ => ValueTask.FromResult(new NetDigest(destinationDevice.ComputeSha256(), destinationKind, "")));
        });
        await using var sender = await NetSenderSession.ConnectAsync("127.0.0.1", listener.LocalEndPoint.Port, 2, security);
        var sent = await NetMigration.SendAsync(sender, [source], MigrationOptions.Default, _ => ValueTask.FromResult(new NetDigest(sourceDevice.ComputeSha256(), sourceKind, ""))).WaitAsync(s_limit);
        var received = await receiveSide.WaitAsync(s_limit);

        Assert.Equal(verdict, sent.Verdict);
        Assert.Equal(verdict, received.Verdict);
        Assert.Equal(destinationKind, sent.Status.DigestKind);
        if (verdict == 1)
        {
            Assert.Equal(sourceDevice.ComputeSha256(), received.SourceDigest);
            Assert.Equal("", sent.Note);
            Assert.Equal("", received.Note);
        }
        else
        {
            string note = NetDigest.NotComparable(sourceKind, destinationKind);
            Assert.Equal(note, sent.Note);
            Assert.Equal(note, received.Note);
            Assert.Empty(received.SourceDigest);
        }
    }

    private static NetDigest Digest(string which, string kind)
        => which switch { "a" => new NetDigest(s_a, kind, ""), "b" => new NetDigest(s_b, kind, ""), _ => NetDigest.None("") };
}
