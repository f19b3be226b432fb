using System.Net.Sockets;
using Vfio.Net;
using Vfio.TestSupport;

namespace Vfio.IntegrationTests.Net;

/// <summary>Host-to-host sessions log their life with the stable event ids of docs/architecture.md, "Logging" (300–399).</summary>
public sealed class NetLoggingTests
{
    private static readonly TimeSpan s_limit = TimeSpan.FromSeconds(60);

    [Fact(Timeout = 120000)]
    public async Task Both_ends_log_the_session_and_an_abort_is_logged_with_its_reason_as_an_exception()
    {
        var ct = TestContext.Current.CancellationToken;
        var token = NetToken.New();
        var security = new NetSecurityOptions { Token = token, IdleTimeout = TimeSpan.FromSeconds(10), HandshakeTimeout = TimeSpan.FromSeconds(10) };
        var senderLog = new RecordingLoggerFactory();
        var receiverLog = new RecordingLoggerFactory();
        await using var listener = NetListener.Bind("127.0.0.1", 0);
        var dropped = new List<string>();
        var accept = listener.AcceptSessionAsync(security, new NetSessionOptions { LoggerFactory = receiverLog }, new NetAcceptOptions { OnDropped = line => { lock (dropped) dropped.Add(line); } }, ct);

        // A connection that speaks garbage is dropped and logged with the reason as an exception object.
        using (var garbage = new Socket(SocketType.Stream, ProtocolType.Tcp))
        {
            await garbage.ConnectAsync(listener.LocalEndPoint, ct);
            await garbage.SendAsync(new byte[128], ct);
            Assert.True(await receiverLog.WaitForAsync(302, s_limit, ct), "the receiver logged no dropped connection (302)");
        }
        Assert.IsAssignableFrom<VfioException>(receiverLog.Exception(302));

        await using var sender = await NetSenderSession.ConnectAsync("127.0.0.1", listener.LocalEndPoint.Port, 2, security, new NetSessionOptions { LoggerFactory = senderLog }, ct).WaitAsync(s_limit, ct);
        await using var receiver = await accept.WaitAsync(s_limit, ct);
        Assert.Contains(300, senderLog.Ids());
        Assert.Contains($"session {sender.SessionId} open to 127.0.0.1:{listener.LocalEndPoint.Port} with 2 channel(s), token", senderLog.Text(300), StringComparison.Ordinal);
        Assert.Contains(301, receiverLog.Ids());
        Assert.Contains($"session {sender.SessionId} accepted from", receiverLog.Text(301), StringComparison.Ordinal);

        await sender.AbortAsync(Errno.ECANCELED, "operator pressed ^C").WaitAsync(s_limit, ct);
        Assert.Contains("ECANCELED: operator pressed ^C", senderLog.Text(304), StringComparison.Ordinal);
        Assert.True(await receiverLog.WaitForAsync(303, s_limit, ct), "the receiver logged no failed session (303)");
        var reason = Assert.IsAssignableFrom<VfioException>(receiverLog.Exception(303));
        Assert.Contains("operator pressed ^C", reason.Message, StringComparison.Ordinal);
    }
}
