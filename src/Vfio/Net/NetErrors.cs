using System.Net.Sockets;
using System.Security.Authentication;

namespace Vfio.Net;

/// <summary>Maps socket and TLS failures to <see cref="VfioException"/> with an errno and plain words.</summary>
internal static class NetErrors
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
            var (errno, words) = Interop.SocketErrno.Map(socket);
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
