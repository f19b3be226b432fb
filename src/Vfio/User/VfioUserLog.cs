using Microsoft.Extensions.Logging;

namespace Vfio.User;

// Source-generated log messages of the vfio-user transport. Event ids are stable: 200–249 server, 250–299 client
// (the engine has 100–199; docs/architecture.md lists every area's range).
internal static partial class VfioUserLog
{
    [LoggerMessage(EventId = 200, EventName = "VfioUserListening", Level = LogLevel.Information, Message = "vfio-user server listening on {Path}")]
    public static partial void Listening(ILogger logger, string path);

    [LoggerMessage(EventId = 201, EventName = "VfioUserClientConnected", Level = LogLevel.Information, Message = "vfio-user client {Client} connected (socket buffers: send {SendBuffer} B, receive {ReceiveBuffer} B)")]
    public static partial void ClientConnected(ILogger logger, int client, int sendBuffer, int receiveBuffer);

    [LoggerMessage(EventId = 202, EventName = "VfioUserClientDisconnected", Level = LogLevel.Information, Message = "vfio-user client {Client} disconnected: {Reason}")]
    public static partial void ClientDisconnected(ILogger logger, int client, string reason);

    [LoggerMessage(EventId = 203, EventName = "VfioUserCommandFailed", Level = LogLevel.Debug, Message = "{Command} (id {Id}) failed: {Error}")]
    public static partial void CommandFailed(ILogger logger, Protocol.VfioUserCommand command, int id, string error);

    [LoggerMessage(EventId = 204, EventName = "VfioUserProtocolError", Level = LogLevel.Warning, Message = "vfio-user protocol error from client {Client}: {Error}")]
    public static partial void ProtocolError(ILogger logger, int client, string error);

    [LoggerMessage(EventId = 205, EventName = "VfioUserStaleSocketReplaced", Level = LogLevel.Information, Message = "replaced stale socket {Path}")]
    public static partial void StaleSocketReplaced(ILogger logger, string path);

    [LoggerMessage(EventId = 206, EventName = "VfioUserHandlerCrashed", Level = LogLevel.Error, Message = "{Command} (id {Id}) crashed the handler")]
    public static partial void HandlerCrashed(ILogger logger, string command, int id, Exception exception);

    [LoggerMessage(EventId = 207, EventName = "VfioUserClientLeftMidMigration", Level = LogLevel.Warning, Message = "vfio-user client {Client} left the device in {State}: the migration state is kept (neither reset nor resumed); 'vfio-mig state', 'resolve' or 'recover' settle it")]
    public static partial void ClientLeftMidMigration(ILogger logger, int client, string state);

    [LoggerMessage(EventId = 250, EventName = "VfioUserNegotiated", Level = LogLevel.Information, Message = "{Server}: vfio-user {Major}.{Minor} negotiated, max_data_xfer_size {MaxDataTransfer} B, max_msg_fds {MaxFds}, twin socket {Twin}")]
    public static partial void Negotiated(ILogger logger, string server, int major, int minor, int maxDataTransfer, int maxFds, bool twin);

    [LoggerMessage(EventId = 251, EventName = "VfioUserConnectionClosed", Level = LogLevel.Information, Message = "{Server}: connection closed")]
    public static partial void ConnectionClosed(ILogger logger, string server, Exception reason);
}
