using System.Runtime.CompilerServices;

[assembly: DisableRuntimeMarshalling]
[assembly: System.Runtime.Versioning.SupportedOSPlatform("linux")]

namespace Vfio.Interop;

internal static partial class Interop
{
    internal const string Libc = "libc";
}
