namespace Vfio.User.Server;

/// <summary>How <see cref="VfioUserConnection.DmaReadAsync(ulong, Memory{byte}, DmaAccessMode, CancellationToken)"/> and <see cref="VfioUserConnection.DmaWriteAsync(ulong, ReadOnlyMemory{byte}, DmaAccessMode, CancellationToken)"/> reach client memory.</summary>
public enum DmaAccessMode
{
    /// <summary>Through the mmap of an fd-backed mapping when there is one (a write marks its pages dirty for DMA logging), else messages.</summary>
    Auto = 0,

    /// <summary>Always DMA_READ/DMA_WRITE messages, also for an fd-backed mapping (libvfio-user's <c>vfu_sgl_read/write</c>; the client sees every access).</summary>
    Messages = 1,
}
