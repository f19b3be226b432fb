using System.Runtime.InteropServices;

namespace Vfio.Interop;

internal static partial class Interop
{
    internal const int F_GETFL = 3;
    internal const int F_SETFL = 4;
    internal const int O_NONBLOCK = 0x800;
    internal const int F_ADD_SEALS = 1033;
    internal const int F_GET_SEALS = 1034;
    internal const int F_SEAL_SHRINK = 0x2;

    /// <summary><c>int fcntl(int fd, int cmd, long arg)</c> (F_GETFL ignores the argument).</summary>
    [LibraryImport(Libc, EntryPoint = "fcntl", SetLastError = true)]
    internal static partial int Fcntl(SafeHandle fd, int command, nint argument);
}
