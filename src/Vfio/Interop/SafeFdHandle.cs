using System.Runtime.InteropServices;

namespace Vfio.Interop;

/// <summary>An owned file descriptor (eventfd, memfd, DMA backing file, received SCM_RIGHTS fd).</summary>
public sealed class SafeFdHandle : SafeHandle
{
    /// <summary>Takes ownership of <paramref name="fd"/>.</summary>
    public SafeFdHandle(int fd, bool ownsHandle = true)
        : base(new IntPtr(-1), ownsHandle)
    {
        SetHandle(new IntPtr(fd));
    }

    /// <inheritdoc/>
    public override bool IsInvalid => handle.ToInt64() < 0;

    /// <summary>The raw descriptor number (valid while this handle is open).</summary>
    public int Fd => (int)handle.ToInt64();

    /// <inheritdoc/>
    protected override bool ReleaseHandle() => Interop.Close((int)handle.ToInt64()) == 0;
}
