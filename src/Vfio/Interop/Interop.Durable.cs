using System.Runtime.InteropServices;

namespace Vfio.Interop;

internal static partial class Interop
{
    [LibraryImport(Libc, EntryPoint = "fsync", SetLastError = true)]
    internal static partial int FSync(int fd);

    /// <summary>link(2): a new name for a file; fails with EEXIST when the name exists (never replaces it).</summary>
    [LibraryImport(Libc, EntryPoint = "link", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    internal static partial int Link(string existing, string newName);

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
