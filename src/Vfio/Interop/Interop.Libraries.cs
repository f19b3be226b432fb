using System.Runtime.CompilerServices;

[assembly: DisableRuntimeMarshalling]

namespace Vfio.Interop;

internal static partial class Interop
{
    internal const string Libc = "libc";
}
