namespace Vfio.User.Protocol;

/// <summary>Every bound on a peer-supplied length or count, in one place (spec §9). Checked before allocating.</summary>
public static class ProtocolLimits
{
    /// <summary>Protocol major version we speak.</summary>
    public const ushort VersionMajor = 0;

    /// <summary>Protocol minor version we speak (as libvfio-user).</summary>
    public const ushort VersionMinor = 2;

    /// <summary>Our max_data_xfer_size: the largest data count we accept in one REGION_*/DMA_*/MIG_DATA_* message.</summary>
    public const int MaxDataTransferSize = 1 << 20;

    /// <summary>Spec default max_data_xfer_size when a peer does not send one.</summary>
    public const int DefaultPeerDataTransferSize = 1 << 20;

    /// <summary>The largest peer max_data_xfer_size we take on (QEMU's bound, 64 MiB).</summary>
    public const long MaxPeerDataTransferSize = 64L << 20;

    /// <summary>The largest whole message we receive: header + 16-byte access head + 1 MiB (= libvfio-user's 1048608).</summary>
    public const int MaxMessageSize = VfioUserHeader.Size + 16 + MaxDataTransferSize;

    /// <summary>Our max_msg_fds: fds we accept in one message.</summary>
    public const int MaxMessageFds = 8;

    /// <summary>Spec default max_msg_fds of a peer that does not say.</summary>
    public const int DefaultPeerMessageFds = 1;

    /// <summary>The largest peer max_msg_fds we accept (libvfio-user: 0..1024).</summary>
    public const int MaxPeerMessageFds = 1024;

    /// <summary>The largest VERSION JSON we parse.</summary>
    public const int MaxVersionJsonLength = 4096;

    /// <summary>Simultaneous DMA mappings per connection.</summary>
    public const int MaxDmaMappings = 65535;

    /// <summary>The largest single DMA mapping (8 TiB, as libvfio-user on x86-64).</summary>
    public const ulong MaxDmaMappingSize = 8UL << 40;

    /// <summary>The only dirty-bitmap page size of the migration capability (spec §4.2).</summary>
    public const int MigrationPageSize = 4096;

    /// <summary>Largest number of DMA logging ranges in START (PAGE_SIZE / 16, as the kernel).</summary>
    public const int MaxDmaLoggingRanges = 256;

    /// <summary>Largest IRQ vector count we accept in one SET_IRQS.</summary>
    public const int MaxIrqVectors = 2048;

    /// <summary>Chunk size for messages sent to a peer that may short-read (libvfio-user, spec §10.1 item 1).</summary>
    public const int SafeChunkToLibVfioUser = 64 << 10;

    /// <summary>
    /// Commands a server connection reads ahead of its worker. Beyond that it stops reading, so a client that sends
    /// without reading replies meets the socket's backpressure instead of growing the server's memory.
    /// </summary>
    public const int MaxQueuedCommands = 64;

    /// <summary>Replies a server connection holds while the client does not read (each up to max_data_xfer_size).</summary>
    public const int MaxQueuedReplies = 4;

    /// <summary>
    /// SO_SNDBUF/SO_RCVBUF asked for on every vfio-user socket: room for a whole default-size data message and the
    /// next. The kernel caps it at net.core.wmem_max/rmem_max (and doubles it for its own bookkeeping).
    /// </summary>
    public const int SocketBufferSize = 2 << 20;
}
