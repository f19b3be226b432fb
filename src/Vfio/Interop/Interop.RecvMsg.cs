using System.Runtime.InteropServices;

namespace Vfio.Interop;

internal static partial class Interop
{
    [LibraryImport(Libc, EntryPoint = "recvmsg", SetLastError = true)]
    internal static unsafe partial nint RecvMsg(int socket, MsgHdr* message, int flags);
}
