using System.Runtime.InteropServices;

namespace Vfio.Interop;

internal static partial class Interop
{
    internal const int PROT_READ = 0x1;
    internal const int PROT_WRITE = 0x2;
    internal const int MAP_SHARED = 0x01;
    internal static readonly nint MAP_FAILED = -1;

    [LibraryImport(Libc, EntryPoint = "mmap", SetLastError = true)]
    internal static partial nint MMap(nint addr, nuint length, int prot, int flags, int fd, long offset);
}
