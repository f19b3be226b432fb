using System.Runtime.InteropServices;

namespace Vfio.Interop;

internal static partial class Interop
{
    [LibraryImport(Libc, EntryPoint = "fsync", SetLastError = true)]
    internal static partial int FSync(int fd);

    /// <summary>link(2): a new name for a file; fails with EEXIST when the name exists (never replaces it).</summary>
    [LibraryImport(Libc, EntryPoint = "link", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    internal static partial int Link(string existing, string newName);

    /// <summary>open(2) flag: an unnamed regular file in the given directory (<c>__O_TMPFILE | O_DIRECTORY</c>).</summary>
    internal const int O_TMPFILE = 0x410000;
    internal const int AT_FDCWD = -100;
    internal const int AT_SYMLINK_FOLLOW = 0x400;

    /// <summary><c>open(path, flags, mode)</c> into an owning handle: an invalid handle and errno on failure.</summary>
    [LibraryImport(Libc, EntryPoint = "open", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    internal static partial SafeFdHandle OpenHandle(string path, int flags, uint mode);

    /// <summary>linkat(2): with <see cref="AT_SYMLINK_FOLLOW"/> and <c>/proc/self/fd/N</c>, names an unnamed (O_TMPFILE) file; EEXIST when the name exists.</summary>
    [LibraryImport(Libc, EntryPoint = "linkat", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    internal static partial int LinkAt(int oldDirFd, string oldPath, int newDirFd, string newPath, int flags);

    /// <summary>The inode change time (<c>st_ctim</c>) of an open file: set by the kernel on every link, unlink, write or attribute change.</summary>
    internal static unsafe DateTimeOffset ChangeTime(SafeHandle fd, string operation)
    {
        byte* stat = stackalloc byte[StatSize];
        CheckIo(FStat(fd, stat), operation);
        long seconds = *(long*)(stat + StatCTimeOffset);
        long nanoseconds = *(long*)(stat + StatCTimeOffset + 8);
        return DateTimeOffset.FromUnixTimeSeconds(seconds).AddTicks(nanoseconds / 100);
    }

    /// <summary>fsync of a directory, so that a rename or link in it survives a crash.</summary>
    internal static void FSyncDirectory(string path)
    {
        int fd = Open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
            ThrowLastError($"open directory {path}");
        try
        {
            if (FSync(fd) < 0)
                ThrowLastError($"fsync directory {path}");
        }
        finally
        {
            _ = Close(fd);
        }
    }
}
