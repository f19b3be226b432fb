using Microsoft.Extensions.Logging;

namespace Vfio.Net;

// Source-generated log messages of host-to-host sessions; event ids are stable (300–399; docs/architecture.md lists
// every area's range).
internal static partial class NetLog
{
    [LoggerMessage(EventId = 300, EventName = "NetSessionConnected", Level = LogLevel.Information, Message = "sender: session {SessionId} open to {Peer} with {Channels} channel(s), {Security}")]
    private static partial void Connected(ILogger logger, Guid sessionId, string peer, int channels, string security);

    public static void Connected(ILogger logger, Guid sessionId, string host, int port, int channels, NetSecurityOptions security)
    {
        if (!logger.IsEnabled(LogLevel.Information))
            return;
        string peer = $"{host}:{port}", mode = Describe(security);
        Connected(logger, sessionId, peer, channels, mode);
    }

    [LoggerMessage(EventId = 301, EventName = "NetSessionAccepted", Level = LogLevel.Information, Message = "receiver: session {SessionId} accepted from {Peer} with {Channels} channel(s), {Security}")]
    private static partial void Accepted(ILogger logger, Guid sessionId, string peer, int channels, string security);

    public static void Accepted(ILogger logger, NetReceiverSession session, NetSecurityOptions security)
    {
        if (!logger.IsEnabled(LogLevel.Information))
            return;
        string peer = session.Peer, mode = Describe(security);
        Accepted(logger, session.SessionId, peer, session.ChannelCount, mode);
    }

    [LoggerMessage(EventId = 302, EventName = "NetConnectionDropped", Level = LogLevel.Warning, Message = "receiver: dropped {What}")]
    public static partial void Dropped(ILogger logger, string what, Exception exception);

    [LoggerMessage(EventId = 303, EventName = "NetSessionFailed", Level = LogLevel.Warning, Message = "{Side}: session {SessionId} ended")]
    public static partial void Failed(ILogger logger, string side, Guid sessionId, Exception exception);

    [LoggerMessage(EventId = 304, EventName = "NetAbortSent", Level = LogLevel.Warning, Message = "{Side}: telling the peer the migration is abandoned: {Errno}: {Reason}")]
    public static partial void AbortSent(ILogger logger, string side, Errno errno, string reason);

    /// <summary>How a session is protected, in the words the CLI uses.</summary>
    private static string Describe(NetSecurityOptions security)
        => security.UseTls ? (security.Token is null ? "TLS" : "TLS and token") : security.Token is not null ? "token (AEAD frames)" : "insecure";
}
