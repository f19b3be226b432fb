using System.Runtime.InteropServices;

namespace Vfio.Interop;

internal static partial class Interop
{
    /// <summary>The one place a failed libc call becomes a <see cref="VfioException"/> (errno name + words).</summary>
    internal static long CheckIo(long result, string operation)
    {
        if (result < 0)
            ThrowLastError(operation);
        return result;
    }

    /// <summary>The errno of the last failed P/Invoke in this thread.</summary>
    internal static Errno LastErrno => (Errno)Marshal.GetLastPInvokeError();

    [System.Diagnostics.CodeAnalysis.DoesNotReturn]
    internal static void ThrowLastError(string operation) => throw ErrnoException((Errno)Marshal.GetLastPInvokeError(), operation);

    /// <summary>The exception for an errno a libc call returned (errno name + the C library's words).</summary>
    internal static VfioException ErrnoException(Errno errno, string operation)
        => new(errno, operation, Marshal.GetPInvokeErrorMessage((int)errno));
}
