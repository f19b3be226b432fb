using System.Runtime.InteropServices;

namespace Vfio.Interop;

internal static partial class Interop
{
    internal static partial class Kernel
    {
        /// <summary>The errno of the last failed import call on this thread.</summary>
        internal static Errno LastErrno() => (Errno)Marshal.GetLastPInvokeError();

        /// <summary>
        /// The one place where a failed libc call becomes an exception: a negative <paramref name="result"/>
        /// throws <see cref="VfioException"/> with the call's errno, what was being done, and plain words.
        /// </summary>
        internal static long CheckIo(long result, string operation, Func<Errno, string?>? explain = null)
        {
            if (result < 0)
                ThrowIo(LastErrno(), operation, explain);
            return result;
        }

        /// <summary>Throws for <paramref name="errno"/>; <paramref name="explain"/> may add plain words for known causes.</summary>
        [System.Diagnostics.CodeAnalysis.DoesNotReturn]
        internal static void ThrowIo(Errno errno, string operation, Func<Errno, string?>? explain = null)
        {
            string? detail = explain?.Invoke(errno);
            string message = detail is null
                ? Marshal.GetPInvokeErrorMessage((int)errno)
                : $"{Marshal.GetPInvokeErrorMessage((int)errno)} — {detail}";
            throw new VfioException(errno, operation, message);
        }
    }
}
