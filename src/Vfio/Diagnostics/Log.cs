using Microsoft.Extensions.Logging;

namespace Vfio.Diagnostics;

/// <summary>Source-generated log messages with stable event ids.</summary>
internal static partial class Log
{
    [LoggerMessage(100, LogLevel.Information, "vfio-user server listening on {Path}")]
    public static partial void Listening(ILogger logger, string path);

    [LoggerMessage(101, LogLevel.Information, "vfio-user client {Client} connected (socket buffers: send {SendBuffer} B, receive {ReceiveBuffer} B)")]
    public static partial void ClientConnected(ILogger logger, int client, int sendBuffer, int receiveBuffer);

    [LoggerMessage(102, LogLevel.Information, "vfio-user client {Client} disconnected: {Reason}")]
    public static partial void ClientDisconnected(ILogger logger, int client, string reason);

    [LoggerMessage(107, LogLevel.Warning, "vfio-user client {Client} left the device in {State}: the migration state is kept (neither reset nor resumed); 'vfio-mig state', 'resolve' or 'recover' settle it")]
    public static partial void ClientLeftMidMigration(ILogger logger, int client, string state);

    [LoggerMessage(103, LogLevel.Debug, "{Command} (id {Id}) failed: {Error}")]
    public static partial void CommandFailed(ILogger logger, string command, int id, string error);

    [LoggerMessage(104, LogLevel.Warning, "vfio-user protocol error from client {Client}: {Error}")]
    public static partial void ProtocolError(ILogger logger, int client, string error);

    [LoggerMessage(105, LogLevel.Information, "replaced stale socket {Path}")]
    public static partial void StaleSocketReplaced(ILogger logger, string path);

    [LoggerMessage(106, LogLevel.Error, "{Command} (id {Id}) crashed the handler: {Error}")]
    public static partial void HandlerCrashed(ILogger logger, string command, int id, string error);
}
