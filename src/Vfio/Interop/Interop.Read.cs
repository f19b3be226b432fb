using System.Runtime.InteropServices;

namespace Vfio.Interop;

internal static partial class Interop
{
    [LibraryImport(Libc, EntryPoint = "read", SetLastError = true)]
    internal static unsafe partial nint Read(int fd, byte* buffer, nuint count);
}
