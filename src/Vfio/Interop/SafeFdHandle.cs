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
    protected override bool ReleaseHandle() => Interop.Close((int)handle.ToInt64()) == 0;
}
