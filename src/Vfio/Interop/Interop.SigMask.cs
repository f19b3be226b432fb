using System.Runtime.InteropServices;

namespace Vfio.Interop;

internal static partial class Interop
{
    private const int SigUnblock = 1;        // SIG_UNBLOCK
    private const int SigSetBytes = 128;     // sizeof(sigset_t) on Linux (1024 bits)
    private const int SigInt = 2;
    private const int SigTerm = 15;

    [LibraryImport(Libc, EntryPoint = "pthread_sigmask")]
    private static unsafe partial int PthreadSigMask(int how, byte* set, byte* oldSet);

    /// <summary>
    /// Unblocks SIGINT and SIGTERM on the calling thread. A process inherits its signal mask from whoever started
    /// it; a mask with them blocked leaves the signals pending forever and the process deaf to its operator.
    /// Returns 0 or the error number (pthread_sigmask reports errors by return value, not errno).
    /// </summary>
    internal static unsafe int UnblockTerminationSignals()
    {
        byte* set = stackalloc byte[SigSetBytes];
        new Span<byte>(set, SigSetBytes).Clear();
        foreach (int signal in (ReadOnlySpan<int>)[SigInt, SigTerm])
            set[(signal - 1) / 8] |= (byte)(1 << ((signal - 1) % 8));
        return PthreadSigMask(SigUnblock, set, null);
    }
}
