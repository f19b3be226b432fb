using System.Runtime.InteropServices;

namespace Vfio.Kernel;

/// <summary>
/// One owned Linux file descriptor of the kernel backend: the VFIO container, a group, a device, or a
/// migration data fd. −1 is invalid; 0 is a valid descriptor. Closing happens exactly once, on dispose
/// or finalization, and a disposed handle can no longer reach the kernel (so a recycled descriptor number
/// is never used by mistake).
/// </summary>
public sealed class SafeVfioFdHandle : SafeHandle
{
    /// <summary>An invalid handle (used by the interop layer, which then sets the descriptor).</summary>
    public SafeVfioFdHandle()
        : base(invalidHandleValue: -1, ownsHandle: true)
    {
    }

    /// <summary>Wraps <paramref name="fd"/>; closes it on dispose when <paramref name="ownsHandle"/>.</summary>
    public SafeVfioFdHandle(int fd, bool ownsHandle)
        : base(invalidHandleValue: -1, ownsHandle)
    {
        SetHandle(fd);
    }

    /// <inheritdoc/>
    public override bool IsInvalid => (int)handle < 0;

    /// <summary>The descriptor number (for messages and for passing to the kernel as a value).</summary>
    public int Fd => (int)handle;

    /// <inheritdoc/>
    protected override bool ReleaseHandle() => Interop.Interop.Kernel.Close((int)handle) == 0;
}
