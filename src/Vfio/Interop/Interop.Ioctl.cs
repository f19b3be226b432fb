using System.Runtime.InteropServices;

namespace Vfio.Interop;

internal static partial class Interop
{
    /// <summary><c>int ioctl(int fd, unsigned long request, void *arg)</c>: the argument is a pointer to a struct.</summary>
    [LibraryImport(Libc, EntryPoint = "ioctl", SetLastError = true)]
    internal static unsafe partial int Ioctl(SafeHandle fd, nuint request, void* arg);

    /// <summary><c>int ioctl(int fd, unsigned long request, unsigned long arg)</c>: the argument is a plain integer.</summary>
    [LibraryImport(Libc, EntryPoint = "ioctl", SetLastError = true)]
    internal static partial int Ioctl(SafeHandle fd, nuint request, nuint arg);
}
