using System.Runtime.InteropServices;

namespace Vfio.Interop;

internal static partial class Interop
{
    internal const int O_RDONLY = 0x0000;
    internal const int O_WRONLY = 0x0001;
    internal const int O_RDWR = 0x0002;
    internal const int O_DIRECTORY = 0x10000;
    internal const int O_CLOEXEC = 0x80000;

    /// <summary><c>int open(const char *path, int flags)</c>: the raw descriptor, or -1 and errno.</summary>
    [LibraryImport(Libc, EntryPoint = "open", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    internal static partial int Open(string path, int flags);

    /// <summary><c>open</c> into an owning handle: an invalid handle and errno on failure.</summary>
    [LibraryImport(Libc, EntryPoint = "open", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    internal static partial SafeFdHandle OpenHandle(string path, int flags);
}
