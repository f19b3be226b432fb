using System.Net.Sockets;
using System.Security.Authentication;

namespace Vfio.Net;

/// <summary>Maps socket and TLS failures to <see cref="VfioException"/> with an errno and plain words.</summary>
public static class NetErrors
{
    /// <summary>Converts an exception from a socket or stream operation.</summary>
    public static VfioException FromIO(Exception e, string operation)
    {
        ArgumentNullException.ThrowIfNull(e);
        if (e is VfioException v)
            return v;
        var socket = e as SocketException ?? e.InnerException as SocketException;
        if (socket is not null)
        {
            var (errno, words) = socket.SocketErrorCode switch
            {
                SocketError.ConnectionRefused => (Errno.ECONNREFUSED, "connection refused: nothing listens there"),
                SocketError.ConnectionReset => (Errno.ECONNRESET, "the peer reset the connection"),
                SocketError.ConnectionAborted => (Errno.ECONNRESET, "the connection was aborted"),
                SocketError.TimedOut => (Errno.ETIMEDOUT, "the connection timed out"),
                SocketError.HostUnreachable or SocketError.NetworkUnreachable or SocketError.NetworkDown => (Errno.ETIMEDOUT, "the peer is unreachable (" + socket.SocketErrorCode + ")"),
                SocketError.Shutdown or SocketError.NotConnected => (Errno.ENOTCONN, "the connection is closed"),
                SocketError.OperationAborted => (Errno.ECANCELED, "the operation was aborted"),
                _ => (Errno.EIO, socket.Message),
            };
            return new VfioException(errno, operation, words, e);
        }
        if (e is AuthenticationException)
            return new VfioException(Errno.EACCES, operation, "TLS handshake failed: " + e.Message, e);
        if (e is ObjectDisposedException)
            return new VfioException(Errno.ENOTCONN, operation, "the connection is closed", e);
        if (e is OperationCanceledException)
            return new VfioException(Errno.ECANCELED, operation, "cancelled", e);
        return new VfioException(Errno.EIO, operation, e.Message, e);
    }
}
