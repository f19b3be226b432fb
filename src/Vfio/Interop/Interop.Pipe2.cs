using System.Runtime.InteropServices;

namespace Vfio.Interop;

internal static partial class Interop
{
    internal const int F_SETPIPE_SZ = 1031;

    /// <summary><c>int pipe2(int pipefd[2], int flags)</c>: [0] is the read end, [1] the write end.</summary>
    [LibraryImport(Libc, EntryPoint = "pipe2", SetLastError = true)]
    internal static unsafe partial int Pipe2(int* fds, int flags);
}
