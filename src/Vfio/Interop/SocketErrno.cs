using System.Net.Sockets;

namespace Vfio.Interop;

/// <summary>
/// The one table from a <see cref="SocketException"/> to a Linux errno and plain words, for every socket the
/// library uses (vfio-user UNIX sockets and host-to-host TCP).
/// </summary>
internal static class SocketErrno
{
    /// <summary>
    /// The errno and words for <paramref name="exception"/>. <paramref name="unixPath"/>: the socket is a UNIX
    /// socket named by a path, where the runtime reports a missing path as AddressNotAvailable.
    /// </summary>
    internal static (Errno Errno, string Words) Map(SocketException exception, bool unixPath = false) => exception.SocketErrorCode switch
    {
        SocketError.AddressNotAvailable when unixPath => (Errno.ENOENT, "no such socket file"),
        SocketError.AccessDenied => (Errno.EACCES, VfioException.Describe(Errno.EACCES)),
        SocketError.AddressAlreadyInUse => (Errno.EADDRINUSE, VfioException.Describe(Errno.EADDRINUSE)),
        SocketError.ConnectionRefused => (Errno.ECONNREFUSED, "connection refused: nothing listens there"),
        SocketError.ConnectionReset => (Errno.ECONNRESET, "the peer reset the connection"),
        SocketError.ConnectionAborted => (Errno.ECONNRESET, "the connection was aborted"),
        SocketError.TimedOut => (Errno.ETIMEDOUT, "the connection timed out"),
        SocketError.HostUnreachable or SocketError.NetworkUnreachable or SocketError.NetworkDown
            => (Errno.ETIMEDOUT, "the peer is unreachable (" + exception.SocketErrorCode + ")"),
        SocketError.Shutdown or SocketError.NotConnected => (Errno.ENOTCONN, "the connection is closed"),
        SocketError.OperationAborted => (Errno.ECANCELED, "the operation was aborted"),
        // On Linux the runtime keeps the platform errno in NativeErrorCode.
        _ when exception.NativeErrorCode > 0 => ((Errno)exception.NativeErrorCode, exception.Message),
        _ => (Errno.EIO, exception.Message),
    };

    /// <summary>A <see cref="VfioException"/> for <paramref name="exception"/> raised by <paramref name="operation"/>.</summary>
    internal static VfioException ToException(SocketException exception, string operation, bool unixPath = false)
    {
        var (errno, words) = Map(exception, unixPath);
        return new VfioException(errno, operation, words, exception);
    }
}
