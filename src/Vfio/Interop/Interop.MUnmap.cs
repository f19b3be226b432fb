using System.Runtime.InteropServices;

namespace Vfio.Interop;

internal static partial class Interop
{
    [LibraryImport(Libc, EntryPoint = "munmap", SetLastError = true)]
    internal static partial int MUnmap(nint addr, nuint length);
}
