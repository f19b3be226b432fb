using System.Runtime.InteropServices;

namespace Vfio.Interop;

internal static partial class Interop
{
    [LibraryImport(Libc, EntryPoint = "sendmsg", SetLastError = true)]
    internal static unsafe partial nint SendMsg(int socket, MsgHdr* message, int flags);
}
