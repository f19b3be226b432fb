using System.Runtime.InteropServices;

namespace Vfio.Interop;

internal static partial class Interop
{
    internal const uint MFD_CLOEXEC = 0x1;
    internal const uint MFD_ALLOW_SEALING = 0x2;

    [LibraryImport(Libc, EntryPoint = "memfd_create", SetLastError = true)]
    internal static unsafe partial int MemFdCreate(byte* name, uint flags);
}
