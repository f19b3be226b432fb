using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using Vfio.Net;

namespace Vfio.IntegrationTests.Net;

/// <summary>Malformed or hostile peers: every length is bounded, every refusal says why.</summary>
public sealed class HandshakeLimitTests
{
    private static readonly TimeSpan s_limit = TimeSpan.FromSeconds(30);
    private static readonly NetSecurityOptions s_token = new() { Token = NetToken.New(), HandshakeTimeout = TimeSpan.FromSeconds(3) };

    [Fact]
    public async Task GarbageHello_IsRefusedWithBadHello()
    {
        await using var listener = NetListener.Bind("127.0.0.1", 0);
        var dropped = new DropLog();
        var accept = listener.AcceptSessionAsync(s_token, null, dropped.Options());
        using var raw = new Socket(SocketType.Stream, ProtocolType.Tcp);
        await raw.ConnectAsync(listener.LocalEndPoint);
        await raw.SendAsync(new byte[64].Select((_, i) => (byte)('A' + (i % 26))).ToArray());
        Assert.Contains("EPROTO", await dropped.WaitForAsync("dropped connection from", s_limit), StringComparison.Ordinal);
        Assert.False(accept.IsCompleted, "a bad hello does not end the receiver's wait");
        byte[] challenge = new byte[NetProtocol.ChallengeSize];
        int got = 0;
        while (got < challenge.Length)
        {
            int n = await raw.ReceiveAsync(challenge.AsMemory(got));
            if (n == 0)
                break;
            got += n;
        }
        Assert.Equal(NetProtocol.ChallengeSize, got);
        Assert.Equal((byte)NetRefusal.BadHello, challenge[10]);
    }

    [Fact]
    public async Task FutureVersion_IsRefusedWithVersionMismatch()
    {
        await using var listener = NetListener.Bind("127.0.0.1", 0);
        var dropped = new DropLog();
        _ = listener.AcceptSessionAsync(s_token, null, dropped.Options());
        using var raw = new Socket(SocketType.Stream, ProtocolType.Tcp);
        await raw.ConnectAsync(listener.LocalEndPoint);
        var hello = new NetHello(99, 0, 0, 0, 1, Guid.NewGuid(), new byte[32]).Encode();
        await raw.SendAsync(hello);
        await dropped.WaitForAsync("version 99", s_limit);
    }

    [Fact]
    public async Task SilentPeer_HandshakeTimesOut()
    {
        await using var listener = NetListener.Bind("127.0.0.1", 0);
        var dropped = new DropLog();
        _ = listener.AcceptSessionAsync(s_token with { HandshakeTimeout = TimeSpan.FromMilliseconds(500) }, null, dropped.Options());
        using var raw = new Socket(SocketType.Stream, ProtocolType.Tcp);
        await raw.ConnectAsync(listener.LocalEndPoint);
        await raw.SendAsync(new byte[] { (byte)'V' });
        Assert.Contains("ETIMEDOUT", await dropped.WaitForAsync("dropped connection from", s_limit), StringComparison.Ordinal);
    }

    [Fact]
    public async Task DataChannelWithoutSession_IsRefused()
    {
        await using var listener = NetListener.Bind("127.0.0.1", 0);
        var dropped = new DropLog();
        _ = listener.AcceptSessionAsync(s_token, null, dropped.Options());
        using var raw = new Socket(SocketType.Stream, ProtocolType.Tcp);
        await raw.ConnectAsync(listener.LocalEndPoint);
        await raw.SendAsync(new NetHello(NetProtocol.Version, 1, 0, 1, 2, Guid.NewGuid(), new byte[32]).Encode());
        await dropped.WaitForAsync("control channel first", s_limit);
    }

    [Fact]
    public async Task HostileReceiver_HugeReasonLength_IsRejectedWithoutReadingIt()
    {
        using var server = new Socket(SocketType.Stream, ProtocolType.Tcp);
        server.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        server.Listen(1);
        var serve = Task.Run(async () =>
        {
            using var s = await server.AcceptAsync();
            byte[] hello = new byte[NetProtocol.HelloSize];
            int got = 0;
            while (got < hello.Length)
                got += await s.ReceiveAsync(hello.AsMemory(got));
            byte[] challenge = new byte[NetProtocol.ChallengeSize];
            NetProtocol.Magic.CopyTo(challenge);
            challenge[10] = (byte)NetRefusal.Busy;
            BinaryPrimitives.WriteUInt16BigEndian(challenge.AsSpan(12), 60000);
            await s.SendAsync(challenge);
            await Task.Delay(2000);
        });
        var e = await Assert.ThrowsAsync<VfioException>(() => NetSenderSession.ConnectAsync("127.0.0.1", ((IPEndPoint)server.LocalEndPoint!).Port, 1, s_token).WaitAsync(s_limit));
        Assert.Equal(Errno.EPROTO, e.Errno);
        Assert.Contains("over the limit", e.Message, StringComparison.Ordinal);
        await serve.WaitAsync(s_limit);
    }

    [Fact]
    public async Task FrameWithHugeLength_IsEbadmsgBeforeAllocating()
    {
        byte[] header = new byte[NetProtocol.FrameHeaderSize];
        header[0] = (byte)NetFrameType.Data;
        BinaryPrimitives.WriteUInt32BigEndian(header.AsSpan(4), uint.MaxValue);
        BinaryPrimitives.WriteUInt32BigEndian(header.AsSpan(16), Crc32C.Compute(header.AsSpan(0, 16))); // a well-formed lie
        var e = await Assert.ThrowsAsync<VfioException>(async () => await NetFrame.ReadAsync(new MemoryStream(header), "test", null, default));
        Assert.Equal(Errno.EBADMSG, e.Errno);
        Assert.Contains("exceeds the limit", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(4)]  // length
    [InlineData(7)]
    [InlineData(9)]  // sequence
    [InlineData(0)]  // type
    public async Task FrameWithDamagedHeader_FailsAtOnce_WithoutWaitingForABody(int at)
    {
        var ms = new MemoryStream();
        await NetFrame.WriteAsync(ms, NetFrameType.Data, 7, new byte[1000], null, default);
        byte[] bytes = ms.ToArray();
        bytes[at] ^= 0x10;
        var e = await Assert.ThrowsAsync<VfioException>(async () => await NetFrame.ReadAsync(new MemoryStream(bytes), "test", null, default));
        Assert.Equal(Errno.EBADMSG, e.Errno);
        Assert.Contains("frame header", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task FrameWithFlippedPayloadBit_FailsCrc()
    {
        var ms = new MemoryStream();
        await NetFrame.WriteAsync(ms, NetFrameType.Data, 7, new byte[1000], null, default);
        byte[] bytes = ms.ToArray();
        bytes[500] ^= 1;
        var e = await Assert.ThrowsAsync<VfioException>(async () => await NetFrame.ReadAsync(new MemoryStream(bytes), "test", null, default));
        Assert.Contains("CRC32C mismatch", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task NoPayloadCrcFlag_OnlyForDataFrames_HeaderStillChecked()
    {
        byte[] frame = new byte[NetProtocol.FrameHeaderSize + 100 + NetProtocol.FrameTrailerSize];
        int n = NetFrame.EncodeInPlace(frame, NetFrameType.Data, 3, 100, null, payloadCrc: false);
        Assert.Equal(NetFrame.FlagNoPayloadCrc, frame[1]);
        var ok = await NetFrame.ReadAsync(new MemoryStream(frame, 0, n), "test", null, default);
        Assert.Equal(3ul, ok!.Sequence);

        byte[] status = (byte[])frame.Clone();
        NetFrame.EncodeInPlace(status, NetFrameType.Status, 0, 100, null);
        status[1] = NetFrame.FlagNoPayloadCrc; // only Data frames may carry it, whatever the header CRC says
        BinaryPrimitives.WriteUInt32BigEndian(status.AsSpan(16), Crc32C.Compute(status.AsSpan(0, 16)));
        var e = await Assert.ThrowsAsync<VfioException>(async () => await NetFrame.ReadAsync(new MemoryStream(status, 0, n), "test", null, default));
        Assert.Equal(Errno.EBADMSG, e.Errno);

        frame[5] ^= 0x01; // the length
        e = await Assert.ThrowsAsync<VfioException>(async () => await NetFrame.ReadAsync(new MemoryStream(frame, 0, n), "test", null, default));
        Assert.Contains("frame header", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void StatusDecode_TruncatedPayload_IsEbadmsg()
    {
        byte[] good = new NetStatus(true, 0, "fine", new byte[32], "").Encode();
        var e = Assert.Throws<VfioException>(() => NetStatus.Decode(good.AsSpan(0, 10)));
        Assert.Equal(Errno.EBADMSG, e.Errno);
    }
}
