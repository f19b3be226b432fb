using System.Runtime.InteropServices;

namespace Vfio.Interop;

internal static partial class Interop
{
    internal static partial class Kernel
    {
        /// <summary><c>int close(int fd)</c>. Only <see cref="Vfio.Kernel.SafeVfioFdHandle"/> calls it.</summary>
        [LibraryImport(Libc, EntryPoint = "close", SetLastError = true)]
        internal static partial int Close(int fd);
    }
}
