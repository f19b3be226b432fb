using System.Runtime.InteropServices;

namespace Vfio.Interop;

internal static partial class Interop
{
    internal const uint SPLICE_F_MOVE = 0x1;
    internal const uint SPLICE_F_NONBLOCK = 0x2;

    /// <summary>
    /// <c>ssize_t splice(int fd_in, loff_t *off_in, int fd_out, loff_t *off_out, size_t len, unsigned int flags)</c>;
    /// one of the two must be a pipe, and neither offset is used here (sockets and pipes have none).
    /// </summary>
    [LibraryImport(Libc, EntryPoint = "splice", SetLastError = true)]
    internal static unsafe partial nint Splice(int fdIn, long* offIn, int fdOut, long* offOut, nuint length, uint flags);
}
