using System.Runtime.InteropServices;

namespace Vfio.Interop;

internal static partial class Interop
{
    /// <summary>
    /// The one place a failed libc call becomes a <see cref="VfioException"/>: a negative <paramref name="result"/>
    /// throws with the call's errno, what was being done, and plain words (<paramref name="explain"/> may add
    /// words for known causes).
    /// </summary>
    internal static long CheckIo(long result, string operation, Func<Errno, string?>? explain = null)
    {
        if (result < 0)
            ThrowIo(LastErrno, operation, explain);
        return result;
    }

    /// <summary>The errno of the last failed P/Invoke in this thread.</summary>
    internal static Errno LastErrno => (Errno)Marshal.GetLastPInvokeError();

    [System.Diagnostics.CodeAnalysis.DoesNotReturn]
    internal static void ThrowLastError(string operation) => throw ErrnoException(LastErrno, operation);

    /// <summary>Throws for <paramref name="errno"/>; <paramref name="explain"/> may add plain words for known causes.</summary>
    [System.Diagnostics.CodeAnalysis.DoesNotReturn]
    internal static void ThrowIo(Errno errno, string operation, Func<Errno, string?>? explain = null)
        => throw ErrnoException(errno, operation, explain);

    /// <summary>The exception for an errno a libc call returned (errno name + the C library's words).</summary>
    internal static VfioException ErrnoException(Errno errno, string operation, Func<Errno, string?>? explain = null)
    {
        string words = Marshal.GetPInvokeErrorMessage((int)errno);
        string? detail = explain?.Invoke(errno);
        return new(errno, operation, detail is null ? words : $"{words} — {detail}");
    }
}
