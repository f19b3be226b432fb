using System.Runtime.InteropServices;

namespace Vfio.Interop;

/// <summary>
/// The one owned file descriptor type: eventfd, memfd, DMA backing file, received SCM_RIGHTS fd, and the kernel's
/// container, group, device and migration data fds. Descriptor 0 is valid; only negative values are invalid.
/// </summary>
internal sealed class SafeFdHandle : SafeHandle
{
    /// <summary>An invalid handle (the interop marshaller creates it, then sets the descriptor).</summary>
    public SafeFdHandle()
        : base(new IntPtr(-1), ownsHandle: true)
    {
    }

    /// <summary>Takes ownership of <paramref name="fd"/>.</summary>
    public SafeFdHandle(int fd, bool ownsHandle = true)
        : base(new IntPtr(-1), ownsHandle)
    {
        SetHandle(new IntPtr(fd));
    }

    /// <inheritdoc/>
    /// <remarks>
    /// Compares the low 32 bits: a marshalled <c>int</c> return of -1 (<c>open</c>) arrives zero-extended in a
    /// 64-bit register, so the whole pointer-sized value is positive.
    /// </remarks>
    public override bool IsInvalid => (int)handle < 0;

    /// <summary>The raw descriptor number (valid while this handle is open).</summary>
    public int Fd => (int)handle;

    /// <summary>A new anonymous memory file (memfd, close-on-exec) of <paramref name="size"/> bytes, e.g. guest memory to DMA_MAP.</summary>
    internal static unsafe SafeFdHandle CreateMemFd(long size)
    {
        var name = "vfio-mig\0"u8;
        int fd;
        fixed (byte* p = name)
            fd = (int)Interop.CheckIo(Interop.MemFdCreate(p, Interop.MFD_CLOEXEC), "memfd_create");
        var handle = new SafeFdHandle(fd);
        try
        {
            Interop.CheckIo(Interop.FTruncate(fd, size), "ftruncate memfd");
        }
        catch
        {
            handle.Dispose();
            throw;
        }
        return handle;
    }

    /// <inheritdoc/>
    protected override bool ReleaseHandle() => Interop.Close((int)handle) == 0;
}
