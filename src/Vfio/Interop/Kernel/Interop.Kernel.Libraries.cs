namespace Vfio.Interop;

internal static partial class Interop
{
    internal static partial class Kernel
    {
        /// <summary>The C library every kernel-backend import binds to.</summary>
        internal const string Libc = "libc";
    }
}
