using System.Runtime.InteropServices;

namespace Vfio.Interop;

internal static partial class Interop
{
    /// <summary><c>ssize_t pread(int fd, void *buf, size_t count, off_t offset)</c> (64-bit off_t on x86_64).</summary>
    [LibraryImport(Libc, EntryPoint = "pread", SetLastError = true)]
    internal static unsafe partial nint PRead(SafeHandle fd, byte* buffer, nuint count, long offset);
}
