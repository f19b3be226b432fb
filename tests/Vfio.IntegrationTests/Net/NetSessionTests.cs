using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Vfio.Net;

namespace Vfio.IntegrationTests.Net;

/// <summary>The transport over real loopback sockets: handshake, auth, TLS, channels, return path, faults.</summary>
public sealed class NetSessionTests
{
    private static readonly NetToken s_token = NetToken.New();
    private static readonly TimeSpan s_limit = TimeSpan.FromSeconds(60);

    private static NetSecurityOptions Token(NetToken token) => new() { Token = token, IdleTimeout = TimeSpan.FromSeconds(5), HandshakeTimeout = TimeSpan.FromSeconds(5) };

    private static async Task<(NetSenderSession Sender, NetReceiverSession Receiver, NetListener Listener)> PairAsync(
        NetSecurityOptions senderSecurity, NetSecurityOptions receiverSecurity, int channels, NetSessionOptions? options = null, int? viaPort = null)
    {
        var listener = NetListener.Bind("127.0.0.1", 0);
        var accept = listener.AcceptSessionAsync(receiverSecurity, options);
        NetSenderSession sender;
        try
        {
            sender = await NetSenderSession.ConnectAsync("127.0.0.1", viaPort ?? listener.LocalEndPoint.Port, channels, senderSecurity, options).WaitAsync(s_limit);
        }
        catch
        {
            await listener.DisposeAsync();
            try
            {
                await accept.WaitAsync(s_limit);
            }
            catch (VfioException)
            {
            }
            throw;
        }
        var receiver = await accept.WaitAsync(s_limit);
        return (sender, receiver, listener);
    }

    private static async Task<byte[]> ReadAllAsync(System.IO.Stream stream)
    {
        using var ms = new MemoryStream();
        await stream.CopyToAsync(ms).WaitAsync(s_limit);
        return ms.ToArray();
    }

    // Reads all of `stream` in 64 KiB reads; after each, waits as long as `pause(reads so far, bytes so far)` says.
    private static async Task<byte[]> ReadSlowlyAsync(System.IO.Stream stream, Func<int, long, TimeSpan> pause)
    {
        using var ms = new MemoryStream();
        byte[] buffer = new byte[64 << 10];
        int n, reads = 0;
        while ((n = await stream.ReadAsync(buffer)) > 0)
        {
            ms.Write(buffer, 0, n);
            if (pause(++reads, ms.Length) is { Ticks: > 0 } wait)
                await Task.Delay(wait);
        }
        return ms.ToArray();
    }

    [Theory]
    [InlineData(1)]
    [InlineData(4)]
    public async Task Transfer_ManyChannels_ArrivesInOrderWithReturnPathAndStatus(int channels)
    {
        var options = new NetSessionOptions { SegmentBytes = 4096, SendQueueDepth = 2 };
        var (sender, receiver, listener) = await PairAsync(Token(s_token), Token(s_token), channels, options);
        await using var _l = listener;
        await using var _s = sender;
        await using var _r = receiver;
        byte[] data = RandomNumberGenerator.GetBytes(3 << 20);
        var readTask = ReadAllAsync(receiver.MigrationStream);
        for (int i = 0; i < data.Length; i += 10_000)
            await sender.MigrationStream.WriteAsync(data.AsMemory(i, Math.Min(10_000, data.Length - i)));
        await sender.CompleteAsync();
        byte[] got = await readTask;
        Assert.Equal(SHA256.HashData(data), SHA256.HashData(got));
        Assert.Equal(channels, receiver.ChannelCount);

        await receiver.ReturnStream.WriteAsync("ack"u8.ToArray());
        byte[] ack = new byte[3];
        await sender.ReturnStream.ReadExactlyAsync(ack).AsTask().WaitAsync(s_limit);
        Assert.Equal("ack"u8.ToArray(), ack);

        var statusTask = receiver.SendStatusAsync(new NetStatus(true, 0, "loaded", SHA256.HashData(got), ""));
        var status = await sender.WaitForStatusAsync().WaitAsync(s_limit);
        await sender.SendByeAsync(1, status.Digest);
        var (verdict, digest) = await statusTask.WaitAsync(s_limit);
        Assert.Equal(1, verdict);
        Assert.Equal(SHA256.HashData(data), digest);
        Assert.True(status.Ok);
        Assert.Equal(SHA256.HashData(data), status.Digest);
    }

    [Theory] // the engine's path: segment buffers filled in place on the sender, parsed in place on the receiver
    [InlineData(1)]
    [InlineData(3)]
    public async Task Transfer_ThroughTheSessionPipes_ArrivesInOrder_AnySizesAndFlushes(int channels)
    {
        var options = new NetSessionOptions { SegmentBytes = 8192, SendQueueDepth = 2, MaxQueuedBytes = 4 << 20 };
        var (sender, receiver, listener) = await PairAsync(Token(s_token), Token(s_token), channels, options);
        await using var _l = listener;
        await using var _s = sender;
        await using var _r = receiver;
        byte[] data = RandomNumberGenerator.GetBytes(12 << 20);
        var random = new Random(5);
        var read = Task.Run(async () =>
        {
            var reader = receiver.CreateMigrationReader();
            using var ms = new MemoryStream();
            while (true)
            {
                var result = await reader.ReadAsync();
                // consume a random part, as a frame parser that needs more bytes would
                long take = result.IsCompleted ? result.Buffer.Length : (long)(result.Buffer.Length * random.NextDouble());
                foreach (var piece in result.Buffer.Slice(0, take))
                    ms.Write(piece.Span);
                reader.AdvanceTo(result.Buffer.GetPosition(take), result.Buffer.End);
                if (result.IsCompleted)
                    break;
            }
            await reader.CompleteAsync();
            return ms.ToArray();
        });
        var writer = sender.CreateMigrationWriter();
        int[] sizes = [1, 24, 4096, 8192, 9000, (1 << 20) + 48, 5 << 20]; // below, at and above a segment; above a frame (staged)
        for (int at = 0, i = 0; at < data.Length; i++)
        {
            var memory = writer.GetMemory(sizes[i % sizes.Length]);
            int n = Math.Min(Math.Min(memory.Length, sizes[i % sizes.Length]), data.Length - at);
            data.AsSpan(at, n).CopyTo(memory.Span);
            writer.Advance(n);
            at += n;
            if (i % 3 != 1)
                await writer.FlushAsync();
        }
        await writer.CompleteAsync();
        await sender.CompleteAsync().WaitAsync(s_limit);
        Assert.Equal(SHA256.HashData(data), SHA256.HashData(await read.WaitAsync(s_limit)));
        Assert.Equal(data.Length, sender.BytesWritten);
        Assert.InRange(receiver.Reassembly.PeakQueuedBytes, 1, options.MaxQueuedBytes + (2 * NetProtocol.MaxFramePayload));
    }

    [Fact]
    public async Task SlowReceiver_EightChannels_QueueStaysWithinTheCap()
    {
        var options = new NetSessionOptions { SegmentBytes = 256 << 10, MaxQueuedBytes = 4 << 20, SendQueueDepth = 8 };
        var (sender, receiver, listener) = await PairAsync(Token(s_token), Token(s_token), 8, options);
        await using var _l = listener;
        await using var _s = sender;
        await using var _r = receiver;
        byte[] data = RandomNumberGenerator.GetBytes(24 << 20);
        // a slow consumer: the channels must wait, not pile up
        var read = Task.Run(() => ReadSlowlyAsync(receiver.MigrationStream, (reads, _) => reads % 16 == 0 ? TimeSpan.FromMilliseconds(1) : TimeSpan.Zero));
        await sender.MigrationStream.WriteAsync(data);
        await sender.CompleteAsync().WaitAsync(s_limit);
        Assert.Equal(SHA256.HashData(data), SHA256.HashData(await read.WaitAsync(s_limit)));
        Assert.InRange(receiver.Reassembly.PeakQueuedBytes, 1, options.MaxQueuedBytes + options.SegmentBytes);
        // The sender too: 8 channels of depth 8 could hold 72 segments; the session-wide cap holds it to 8.
        Assert.InRange(sender.PeakSegmentsInFlight, 1, NetSessionOptions.DefaultMaxSendSegments);
    }

    [Theory] // one slot for the whole session still moves everything, in order, over any number of channels
    [InlineData(1, 1)]
    [InlineData(3, 1)]
    [InlineData(3, 2)]
    public async Task Transfer_WithFewSendSlots_ArrivesInOrder_AndNeverHoldsMore(int channels, int slots)
    {
        var options = new NetSessionOptions { SegmentBytes = 64 << 10, MaxSendSegments = slots };
        var (sender, receiver, listener) = await PairAsync(Token(s_token), Token(s_token), channels, options);
        await using var _l = listener;
        await using var _s = sender;
        await using var _r = receiver;
        byte[] data = RandomNumberGenerator.GetBytes(6 << 20);
        var read = Task.Run(async () =>
        {
            using var ms = new MemoryStream();
            await receiver.MigrationStream.CopyToAsync(ms);
            return ms.ToArray();
        });
        await sender.MigrationStream.WriteAsync(data);
        await sender.CompleteAsync().WaitAsync(s_limit);
        Assert.Equal(SHA256.HashData(data), SHA256.HashData(await read.WaitAsync(s_limit)));
        Assert.Equal(slots, sender.PeakSegmentsInFlight);
    }

    [Fact]
    public async Task WrongToken_BothSidesRefuseAndSayWhy()
    {
        var listener = NetListener.Bind("127.0.0.1", 0);
        await using var _l = listener;
        var dropped = new DropLog();
        _ = listener.AcceptSessionAsync(Token(s_token), null, dropped.Options());
        var send = await Assert.ThrowsAsync<VfioException>(() => NetSenderSession.ConnectAsync("127.0.0.1", listener.LocalEndPoint.Port, 1, Token(NetToken.New())).WaitAsync(s_limit));
        string recv = await dropped.WaitForAsync("different tokens", s_limit);
        Assert.Equal(Errno.EACCES, send.Errno);
        Assert.Contains("EACCES", recv, StringComparison.Ordinal);
        Assert.Contains("different tokens", send.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task NoToken_TokenReceiver_RefusesUnauthenticatedSender()
    {
        var listener = NetListener.Bind("127.0.0.1", 0);
        await using var _l = listener;
        var dropped = new DropLog();
        _ = listener.AcceptSessionAsync(Token(s_token), null, dropped.Options());
        var send = await Assert.ThrowsAsync<VfioException>(() => NetSenderSession.ConnectAsync("127.0.0.1", listener.LocalEndPoint.Port, 1, NetSecurityOptions.InsecureDefault).WaitAsync(s_limit));
        Assert.Equal(Errno.EACCES, send.Errno);
        Assert.Contains("requires a pre-shared token", send.Message, StringComparison.Ordinal);
        await dropped.WaitForAsync("offered none", s_limit);
    }

    [Fact]
    public async Task TokenSender_InsecureReceiver_SenderRefusesUnprovenReceiver()
    {
        var listener = NetListener.Bind("127.0.0.1", 0);
        await using var _l = listener;
        var dropped = new DropLog();
        _ = listener.AcceptSessionAsync(NetSecurityOptions.InsecureDefault, null, dropped.Options());
        var send = await Assert.ThrowsAsync<VfioException>(() => NetSenderSession.ConnectAsync("127.0.0.1", listener.LocalEndPoint.Port, 1, Token(s_token)).WaitAsync(s_limit));
        Assert.Contains("cannot prove the sender's", send.Message, StringComparison.Ordinal);
        await dropped.WaitForAsync("cannot prove the sender's", s_limit);
    }

    [Fact]
    public void PlainTcp_WithoutTokenOrInsecure_IsRefusedBeforeConnecting()
    {
        var e = Assert.Throws<VfioException>(() => new NetSecurityOptions().Validate("send"));
        Assert.Equal(Errno.EACCES, e.Errno);
        Assert.Contains("--insecure", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("[::]", "127.0.0.1")]
    [InlineData("[::]", "::1")]
    [InlineData("localhost", "127.0.0.1")]
    public async Task Listen_DualStackAndNames_AcceptSenders(string listen, string connect)
    {
        await using var listener = NetListener.Bind(listen, 0);
        var accept = listener.AcceptSessionAsync(Token(s_token));
        await using var sender = await NetSenderSession.ConnectAsync(connect, listener.LocalEndPoint.Port, 2, Token(s_token)).WaitAsync(s_limit);
        await using var receiver = await accept.WaitAsync(s_limit);
        await sender.MigrationStream.WriteAsync(new byte[10_000]);
        await sender.CompleteAsync();
        Assert.Equal(10_000, (await ReadAllAsync(receiver.MigrationStream)).Length);
    }

    [Fact]
    public async Task Insecure_BothSides_Works()
    {
        var (sender, receiver, listener) = await PairAsync(NetSecurityOptions.InsecureDefault, NetSecurityOptions.InsecureDefault, 2);
        await using var _l = listener;
        await using var _s = sender;
        await using var _r = receiver;
        await sender.MigrationStream.WriteAsync(new byte[100_000]);
        await sender.CompleteAsync();
        Assert.Equal(100_000, (await ReadAllAsync(receiver.MigrationStream)).Length);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Tls_ServerAndMutualAuth_Works(bool mutual)
    {
        using var certs = new TestCertificates();
        var recv = new NetSecurityOptions { UseTls = true, Certificate = certs.Server, TrustedCertificates = mutual ? [certs.Ca] : null, AllowAnonymousSenders = !mutual };
        var send = new NetSecurityOptions { UseTls = true, TrustedCertificates = [certs.Ca], Certificate = mutual ? certs.Client : null };
        var (sender, receiver, listener) = await PairAsync(send, recv, 3, new NetSessionOptions { SegmentBytes = 8192 });
        await using var _l = listener;
        await using var _s = sender;
        await using var _r = receiver;
        byte[] data = RandomNumberGenerator.GetBytes(1 << 20);
        var read = ReadAllAsync(receiver.MigrationStream);
        await sender.MigrationStream.WriteAsync(data);
        await sender.CompleteAsync();
        Assert.Equal(data, await read);
    }

    [Fact]
    public async Task Tls_UntrustedReceiverCertificate_SenderRefuses()
    {
        using var certs = new TestCertificates();
        var listener = NetListener.Bind("127.0.0.1", 0);
        await using var _l = listener;
        var dropped = new DropLog();
        _ = listener.AcceptSessionAsync(new NetSecurityOptions { UseTls = true, Certificate = certs.Server, AllowAnonymousSenders = true }, null, dropped.Options());
        var e = await Assert.ThrowsAsync<VfioException>(() => NetSenderSession.ConnectAsync("127.0.0.1", listener.LocalEndPoint.Port, 1, new NetSecurityOptions { UseTls = true, TrustedCertificates = [certs.OtherCa] }).WaitAsync(s_limit));
        Assert.Equal(Errno.EACCES, e.Errno);
        Assert.Contains("does not chain to the given CA", e.Message, StringComparison.Ordinal);
        await dropped.WaitForAsync("dropped connection from", s_limit);
    }

    [Fact]
    public async Task Tls_MutualWithoutClientCertificate_BothSidesFail()
    {
        using var certs = new TestCertificates();
        var listener = NetListener.Bind("127.0.0.1", 0);
        await using var _l = listener;
        var dropped = new DropLog();
        _ = listener.AcceptSessionAsync(new NetSecurityOptions { UseTls = true, Certificate = certs.Server, TrustedCertificates = [certs.Ca] }, null, dropped.Options());
        var send = NetSenderSession.ConnectAsync("127.0.0.1", listener.LocalEndPoint.Port, 1, new NetSecurityOptions { UseTls = true, TrustedCertificates = [certs.Ca] });
        await dropped.WaitForAsync("presented no certificate", s_limit);
        await Assert.ThrowsAsync<VfioException>(() => send.WaitAsync(s_limit));
    }

    [Fact]
    public async Task PlainSender_TlsReceiver_BothSidesSayTlsIsRequired()
    {
        using var certs = new TestCertificates();
        var listener = NetListener.Bind("127.0.0.1", 0);
        await using var _l = listener;
        var dropped = new DropLog();
        _ = listener.AcceptSessionAsync(new NetSecurityOptions { UseTls = true, Certificate = certs.Server, AllowAnonymousSenders = true }, null, dropped.Options());
        var s = await Assert.ThrowsAsync<VfioException>(() => NetSenderSession.ConnectAsync("127.0.0.1", listener.LocalEndPoint.Port, 1, Token(s_token)).WaitAsync(s_limit));
        Assert.Contains("requires TLS", s.Message, StringComparison.Ordinal);
        await dropped.WaitForAsync("requires TLS", s_limit);
    }

    [Fact]
    public async Task CorruptedFrame_ReceiverFailsWithEbadmsg_SenderLearnsOfIt()
    {
        var listener = NetListener.Bind("127.0.0.1", 0);
        await using var _l = listener;
        await using var proxy = new FaultProxy(listener.LocalEndPoint, ProxyFault.Corrupt, connection: 1, offset: 300_000);
        var accept = listener.AcceptSessionAsync(Token(s_token));
        await using var sender = await NetSenderSession.ConnectAsync("127.0.0.1", proxy.Port, 2, Token(s_token), new NetSessionOptions { PayloadCrc = true }).WaitAsync(s_limit);
        await using var receiver = await accept.WaitAsync(s_limit);
        var read = ReadAllAsync(receiver.MigrationStream);
        try
        {
            await sender.MigrationStream.WriteAsync(RandomNumberGenerator.GetBytes(2 << 20));
            await Task.WhenAny(sender.CompleteAsync(), Task.Delay(s_limit));
        }
        catch (VfioException early) when (early.Errno == Errno.EBADMSG)
        {
            // The damage is 300 KB in: on a slow run the receiver's Abort reaches the sender before it wrote it all.
        }
        var e = await Assert.ThrowsAsync<VfioException>(() => read);
        Assert.Equal(Errno.EBADMSG, e.Errno);
        Assert.Contains("failed authentication", e.Message, StringComparison.Ordinal);
        await receiver.AbortAsync(e.Errno, e.Message);
        var s = await Assert.ThrowsAsync<VfioException>(() => sender.WaitForStatusAsync().WaitAsync(s_limit));
        Assert.Contains("EBADMSG", s.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(ProxyFault.Cut, Errno.ECONNRESET)]
    [InlineData(ProxyFault.Stall, Errno.ETIMEDOUT)]
    public async Task CutOrStalledLink_BothSidesFailWithClearErrno(ProxyFault fault, Errno expected)
    {
        var security = Token(s_token) with { IdleTimeout = TimeSpan.FromSeconds(1.5) };
        var listener = NetListener.Bind("127.0.0.1", 0);
        await using var _l = listener;
        await using var proxy = new FaultProxy(listener.LocalEndPoint, fault, connection: 0, offset: 200_000);
        var accept = listener.AcceptSessionAsync(security);
        await using var sender = await NetSenderSession.ConnectAsync("127.0.0.1", proxy.Port, 1, security).WaitAsync(s_limit);
        await using var receiver = await accept.WaitAsync(s_limit);
        var read = ReadAllAsync(receiver.MigrationStream);
        var write = Task.Run(async () =>
        {
            await sender.MigrationStream.WriteAsync(new byte[4 << 20]);
            await sender.CompleteAsync();
            return await sender.WaitForStatusAsync();
        });
        var r = await Assert.ThrowsAsync<VfioException>(() => read.WaitAsync(s_limit));
        var s = await Assert.ThrowsAsync<VfioException>(() => write.WaitAsync(s_limit));
        Assert.Equal(expected, r.Errno);
        Assert.True(s.Errno is Errno.ECONNRESET or Errno.ETIMEDOUT or Errno.ENOTCONN, s.Message);
    }

    // A receiver whose own reader pauses longer than --idle-timeout holds its channels back (they wait for room in
    // the reorder buffer); that is local backpressure, not a stalled peer, and must not end the session as ETIMEDOUT.
    [Fact]
    public async Task SlowLocalReader_LongerThanTheIdleTimeout_IsNotAStalledPeer()
    {
        var security = Token(s_token) with { IdleTimeout = TimeSpan.FromSeconds(1) };
        var options = new NetSessionOptions { SegmentBytes = 256 << 10, MaxQueuedBytes = 4 << 20 };
        var (sender, receiver, listener) = await PairAsync(security, security, 3, options);
        await using var _l = listener;
        await using var _s = sender;
        await using var _r = receiver;
        byte[] data = RandomNumberGenerator.GetBytes(16 << 20);
        // one pause of 2.5 s after the first MiB: the channels fill the 4 MiB cap and wait
        bool paused = false;
        var read = Task.Run(() => ReadSlowlyAsync(receiver.MigrationStream, (_, bytes) =>
        {
            if (paused || bytes < 1 << 20)
                return TimeSpan.Zero;
            paused = true;
            return TimeSpan.FromSeconds(2.5);
        }));
        await sender.MigrationStream.WriteAsync(data);
        await sender.CompleteAsync().WaitAsync(s_limit);
        Assert.Equal(SHA256.HashData(data), SHA256.HashData(await read.WaitAsync(s_limit)));
    }
}
