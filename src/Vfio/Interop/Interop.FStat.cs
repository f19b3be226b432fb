using System.Runtime.InteropServices;

namespace Vfio.Interop;

internal static partial class Interop
{
    // x86_64 struct stat is 144 bytes; st_mode is the u32 at offset 24, st_size the i64 at offset 48, st_ctim the
    // timespec (i64 seconds, i64 nanoseconds) at offset 104.
    internal const int StatSize = 144;
    internal const int StatModeOffset = 24;
    internal const int StatSizeOffset = 48;
    internal const int StatCTimeOffset = 104;
    internal const uint S_IFMT = 0xF000;
    internal const uint S_IFSOCK = 0xC000;

    [LibraryImport(Libc, EntryPoint = "fstat", SetLastError = true)]
    internal static unsafe partial int FStat(int fd, byte* statBuffer);

    [LibraryImport(Libc, EntryPoint = "fstat", SetLastError = true)]
    internal static unsafe partial int FStat(SafeHandle fd, byte* statBuffer);

    [LibraryImport(Libc, EntryPoint = "lstat", SetLastError = true)]
    internal static unsafe partial int LStat(byte* path, byte* statBuffer);
}
