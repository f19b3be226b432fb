namespace Vfio.User.Protocol;

/// <summary>
/// Every bound we put on a peer-supplied length or count, in one place (spec §9), checked before allocating. These are
/// fixed: what a peer may ask of us. Values the protocol defines are in <see cref="VfioUserSpec"/>; what a server or
/// client advertises is an option (<see cref="Server.VfioUserServerOptions"/>, <see cref="Client.VfioUserClientOptions"/>)
/// range-checked against these.
/// </summary>
public static class ProtocolLimits
{
    /// <summary>The largest max_data_xfer_size we advertise: the largest data count in one REGION_*/DMA_*/MIG_DATA_* message.</summary>
    public const int MaxDataTransferBytes = 1 << 20;

    /// <summary>The largest peer max_data_xfer_size we take on (QEMU's bound, 64 MiB).</summary>
    public const long MaxPeerDataTransferBytes = 64L << 20;

    /// <summary>The largest whole message we receive: header + 16-byte access head + 1 MiB (= libvfio-user's 1048608).</summary>
    public const int MaxMessageBytes = VfioUserHeader.Size + 16 + MaxDataTransferBytes;

    /// <summary>The largest max_msg_fds we advertise: fds we accept in one message.</summary>
    public const int MaxMessageFds = 8;

    /// <summary>The largest peer max_msg_fds we accept (libvfio-user: 0..1024).</summary>
    public const int MaxPeerMessageFds = 1024;

    /// <summary>The largest VERSION JSON we parse.</summary>
    public const int MaxVersionJsonBytes = 4096;

    /// <summary>Simultaneous DMA mappings per connection.</summary>
    public const int MaxDmaMappings = 65535;

    /// <summary>The largest single DMA mapping (8 TiB, as libvfio-user on x86-64).</summary>
    public const ulong MaxDmaMappingBytes = 8UL << 40;

    /// <summary>Largest number of DMA logging ranges in START (PAGE_SIZE / 16, as the kernel).</summary>
    public const int MaxDmaLoggingRanges = 256;

    /// <summary>Largest IRQ vector count we accept in one SET_IRQS.</summary>
    public const int MaxIrqVectors = 2048;
}
