using System.Runtime.InteropServices;

namespace Vfio.Interop;

internal static partial class Interop
{
    [LibraryImport(Libc, EntryPoint = "write", SetLastError = true)]
    internal static unsafe partial nint Write(int fd, byte* buffer, nuint count);
}
