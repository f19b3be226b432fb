using System.Runtime.InteropServices;

namespace Vfio.Interop;

internal static partial class Interop
{
    [LibraryImport(Libc, EntryPoint = "ftruncate", SetLastError = true)]
    internal static partial int FTruncate(int fd, long length);
}
