using System.Runtime.InteropServices;
using Vfio.Kernel;

namespace Vfio.Interop;

internal static partial class Interop
{
    internal static partial class Kernel
    {
        internal const int O_RDONLY = 0x0000;
        internal const int O_WRONLY = 0x0001;
        internal const int O_RDWR = 0x0002;
        internal const int O_CLOEXEC = 0x80000;

        /// <summary><c>int open(const char *path, int flags)</c>; an invalid handle and errno on failure.</summary>
        [LibraryImport(Libc, EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
        internal static partial SafeVfioFdHandle Open(string path, int flags);
    }
}
