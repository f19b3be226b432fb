using System.Net.Sockets;
using Vfio.Interop;
using Vfio.User.Transport;

namespace Vfio.Tests.User;

/// <summary>The one SocketError→errno table, as the vfio-user and TCP transports see it.</summary>
public sealed class SocketErrnoTests
{
    [Theory]
    [InlineData(SocketError.ConnectionRefused, Errno.ECONNREFUSED)]
    [InlineData(SocketError.ConnectionReset, Errno.ECONNRESET)]
    [InlineData(SocketError.ConnectionAborted, Errno.ECONNRESET)]
    [InlineData(SocketError.TimedOut, Errno.ETIMEDOUT)]
    [InlineData(SocketError.NotConnected, Errno.ENOTCONN)]
    [InlineData(SocketError.Shutdown, Errno.ENOTCONN)]
    [InlineData(SocketError.OperationAborted, Errno.ECANCELED)]
    [InlineData(SocketError.AddressAlreadyInUse, Errno.EADDRINUSE)]
    [InlineData(SocketError.AccessDenied, Errno.EACCES)]
    public void Socket_errors_map_to_their_errno(SocketError error, Errno expected)
        => Assert.Equal(expected, SocketErrno.Map(new SocketException((int)error)).Errno);

    [Fact]
    public void Unnamed_socket_errors_keep_the_platform_errno()
        => Assert.Equal(Errno.EMSGSIZE, SocketErrno.Map(new SocketException((int)SocketError.MessageSize)).Errno);

    [Fact]
    public async Task Connecting_to_a_missing_unix_path_is_ENOENT_and_to_a_dead_socket_ECONNREFUSED()
    {
        string dir = Directory.CreateTempSubdirectory("vfio-sockerr-").FullName;
        try
        {
            string missing = Path.Combine(dir, "missing.sock");
            var e = await Assert.ThrowsAsync<VfioException>(() => UnixFdSocket.ConnectAsync(missing, TestContext.Current.CancellationToken));
            Assert.Equal(Errno.ENOENT, e.Errno);
            Assert.Contains(missing, e.Message, StringComparison.Ordinal);

            // A bound socket nobody listens on: the kernel refuses the connection.
            string dead = Path.Combine(dir, "dead.sock");
            using (var bound = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified))
            {
                bound.Bind(new UnixDomainSocketEndPoint(dead));
                var refused = await Assert.ThrowsAsync<VfioException>(() => UnixFdSocket.ConnectAsync(dead, TestContext.Current.CancellationToken));
                Assert.Equal(Errno.ECONNREFUSED, refused.Errno);
            }
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
