using System.Runtime.InteropServices;

namespace Vfio.Interop;

internal static partial class Interop
{
    internal const short POLLIN = 0x0001;
    internal const short POLLOUT = 0x0004;
    internal const short POLLERR = 0x0008;
    internal const short POLLHUP = 0x0010;

    /// <summary><c>struct pollfd</c>: int fd, short events, short revents (8 bytes).</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct PollFd
    {
        public int Fd;
        public short Events;
        public short REvents;
    }

    /// <summary><c>int poll(struct pollfd *fds, nfds_t nfds, int timeout)</c>.</summary>
    [LibraryImport(Libc, EntryPoint = "poll", SetLastError = true)]
    internal static unsafe partial int Poll(PollFd* fds, nuint count, int timeoutMilliseconds);
}
