using System.Net;
using System.Net.Sockets;
using Vfio.Engine;
using Vfio.Migration;
using Vfio.Net;
using Vfio.Sample;

namespace Vfio.IntegrationTests.Net;

/// <summary>
/// A receiver on an open port meets hostile peers before its sender: garbage, connect-and-close, a trickle of one
/// byte a second, silence, a TLS hello on a plain port, a wrong token. Each is dropped with one line and none ends
/// the wait; the legitimate migration that follows succeeds and verifies. A second receiver on the same port fails.
/// </summary>
public sealed class HostilePeerTests(ITestOutputHelper log)
{
    private static readonly TimeSpan s_limit = TimeSpan.FromSeconds(60);
    private static readonly NetSecurityOptions s_security = new() { Token = NetToken.New(), HandshakeTimeout = TimeSpan.FromSeconds(1.5), IdleTimeout = TimeSpan.FromSeconds(10) };

    [Fact]
    public async Task HostileConnections_AreDroppedOneLineEach_ThenALegitimateMigrationSucceeds()
    {
        var options = new SampleDeviceOptions { SizeBytes = 2 << 20 };
        using var sourceDevice = new SampleDevice(options with { Seed = 1 });
        using var destinationDevice = new SampleDevice(options with { Seed = 2 });
        await using var source = new InProcessMigrationDevice(sourceDevice, "sample:source");
        await using var destination = new InProcessMigrationDevice(destinationDevice, "sample:destination");
        await using var listener = NetListener.Bind("127.0.0.1", 0);
        var dropped = new DropLog();
        var accept = listener.AcceptSessionAsync(s_security, null, dropped.Options());
        var target = listener.LocalEndPoint;

        using var garbage = await ConnectAsync(target);
        await garbage.SendAsync(Enumerable.Range(0, 200).Select(i => (byte)(i * 7)).ToArray());
        using (var closer = await ConnectAsync(target))
            closer.Close();
        using var tlsHello = await ConnectAsync(target);
        await tlsHello.SendAsync(new byte[] { 0x16, 0x03, 0x01, 0x00, 0x05 });
        using var silent = await ConnectAsync(target);
        using var trickleCts = new CancellationTokenSource(s_limit);
        var trickle = TrickleAsync(target, trickleCts.Token);
        var wrongToken = await Assert.ThrowsAsync<VfioException>(() => NetSenderSession.ConnectAsync("127.0.0.1", target.Port, 2, s_security with { Token = NetToken.New() }).WaitAsync(s_limit));
        Assert.Equal(Errno.EACCES, wrongToken.Errno);

        await dropped.WaitForAsync("not a vfio-mig hello", s_limit); // garbage
        await dropped.WaitForAsync("without a word", s_limit); // connect-and-close
        await dropped.WaitForAsync("started TLS", s_limit);
        await dropped.WaitForAsync("different tokens", s_limit);
        await dropped.WaitForAsync("did not complete the handshake", s_limit, count: 2); // silent and trickle
        await trickleCts.CancelAsync();
        await trickle;
        foreach (var line in dropped.Lines)
            log.WriteLine(line);
        Assert.All(dropped.Lines, l => Assert.StartsWith("dropped connection from 127.0.0.1:", l, StringComparison.Ordinal));
        Assert.False(accept.IsCompleted, "no hostile peer ended the receiver's wait");

        var receiveSide = Task.Run(async () =>
        {
            await using var session = await accept.WaitAsync(s_limit);
            return await NetMigration.ReceiveAsync(session, [destination], MigrationOptions.Default, _ => ValueTask.FromResult(new NetDigest(destinationDevice.ComputeSha256(), "bar0", "")));
        });
        await using var sender = await NetSenderSession.ConnectAsync("127.0.0.1", target.Port, 2, s_security).WaitAsync(s_limit);
        var sent = await NetMigration.SendAsync(sender, [source], MigrationOptions.Default, _ => ValueTask.FromResult(new NetDigest(sourceDevice.ComputeSha256(), "bar0", ""))).WaitAsync(s_limit);
        var received = await receiveSide.WaitAsync(s_limit);
        Assert.Equal(1, sent.Verdict);
        Assert.Equal(1, received.Verdict);
        Assert.Equal(sourceDevice.ComputeSha256(), destinationDevice.ComputeSha256());
        Assert.Equal(VfioMigrationState.Running, await destination.GetStateAsync());
    }

    [Fact]
    public async Task ConnectionsInTheirHandshake_AreBounded_TheExcessIsDroppedAtOnce()
    {
        await using var listener = NetListener.Bind("127.0.0.1", 0);
        var dropped = new DropLog();
        var accept = listener.AcceptSessionAsync(s_security with { HandshakeTimeout = TimeSpan.FromSeconds(30) }, null, dropped.Options(new NetAcceptOptions { MaxPendingHandshakes = 3 }));
        var idle = new List<Socket>();
        try
        {
            for (int i = 0; i < 3; i++)
                idle.Add(await ConnectAsync(listener.LocalEndPoint));
            // The accept loop takes connections in order, so the fourth meets three pending handshakes.
            using var excess = new Socket(SocketType.Stream, ProtocolType.Tcp);
            bool closed;
            try
            {
                await excess.ConnectAsync(listener.LocalEndPoint).WaitAsync(s_limit);
                closed = await ClosedByPeerAsync(excess);
            }
            catch (SocketException e) when (e.SocketErrorCode == SocketError.ConnectionReset)
            {
                closed = true; // reset before the connect completed here
            }
            Assert.Contains("the limit", await dropped.WaitForAsync("EBUSY", s_limit), StringComparison.Ordinal);
            Assert.True(closed, "the connection over the limit is closed");
            // Freeing the slots lets an authenticated sender in.
            foreach (var s in idle)
                s.Close();
            await dropped.WaitForAsync("without a word", s_limit, count: 3);
            await using var sender = await NetSenderSession.ConnectAsync("127.0.0.1", listener.LocalEndPoint.Port, 1, s_security).WaitAsync(s_limit);
            await using var receiver = await accept.WaitAsync(s_limit);
            Assert.Equal(sender.SessionId, receiver.SessionId);
        }
        finally
        {
            foreach (var s in idle)
                s.Dispose();
        }
    }

    [Fact]
    public async Task AcceptTimeout_WithOnlyHostilePeers_IsEtimedoutAndCountsThem()
    {
        await using var listener = NetListener.Bind("127.0.0.1", 0);
        var dropped = new DropLog();
        var accept = listener.AcceptSessionAsync(s_security, null, dropped.Options(new NetAcceptOptions { AcceptTimeout = TimeSpan.FromSeconds(3) }));
        using (var closer = await ConnectAsync(listener.LocalEndPoint))
            closer.Close();
        await dropped.WaitForAsync("without a word", s_limit);
        var e = await Assert.ThrowsAsync<VfioException>(() => accept.WaitAsync(s_limit));
        Assert.Equal(Errno.ETIMEDOUT, e.Errno);
        Assert.Contains("--accept-timeout", e.Message, StringComparison.Ordinal);
        Assert.Contains("1 connection(s) were dropped", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task SecondListenerOnTheSamePort_FailsWithEaddrinuse()
    {
        await using var first = NetListener.Bind("127.0.0.1", 0);
        var e = Assert.Throws<VfioException>(() => NetListener.Bind("127.0.0.1", first.LocalEndPoint.Port));
        Assert.Equal(Errno.EADDRINUSE, e.Errno);
        Assert.StartsWith("EADDRINUSE", e.Message, StringComparison.Ordinal);
        var any = Assert.Throws<VfioException>(() => NetListener.Bind("0.0.0.0", first.LocalEndPoint.Port));
        Assert.Equal(Errno.EADDRINUSE, any.Errno);
    }

    private static async Task<Socket> ConnectAsync(IPEndPoint target)
    {
        var s = new Socket(SocketType.Stream, ProtocolType.Tcp);
        await s.ConnectAsync(target).WaitAsync(s_limit);
        return s;
    }

    private static async Task<bool> ClosedByPeerAsync(Socket socket)
    {
        try
        {
            return await socket.ReceiveAsync(new byte[16], SocketFlags.None).WaitAsync(s_limit) == 0;
        }
        catch (SocketException e) when (e.SocketErrorCode == SocketError.ConnectionReset)
        {
            return true;
        }
    }

    // A well-formed hello, one byte a second: it never finishes within the handshake timeout.
    private static async Task TrickleAsync(IPEndPoint target, CancellationToken cancellationToken)
    {
        using var s = await ConnectAsync(target);
        byte[] hello = new NetHello(NetProtocol.Version, 0, NetHello.FlagHasToken, 0, 1, Guid.NewGuid(), new byte[32]).Encode();
        try
        {
            foreach (byte b in hello)
            {
                await s.SendAsync(new[] { b }, cancellationToken);
                await Task.Delay(1000, cancellationToken);
            }
        }
        catch (Exception e) when (e is OperationCanceledException or SocketException)
        {
            // Cancelled by the test, or the receiver closed the trickle (the point).
        }
    }
}
