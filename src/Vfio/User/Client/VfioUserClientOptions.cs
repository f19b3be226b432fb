using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Vfio.User.Protocol;

namespace Vfio.User.Client;

/// <summary>Client settings.</summary>
public sealed record VfioUserClientOptions
{
    /// <summary>The defaults.</summary>
    public static VfioUserClientOptions Default { get; } = new();

    /// <summary>
    /// max_data_xfer_size we advertise: the largest data count we accept (MIG_DATA_READ size, DMA_WRITE count).
    /// 512 B to <see cref="ProtocolLimits.MaxPeerDataTransferBytes"/> (64 MiB); default 1 MiB.
    /// </summary>
    public int MaxDataTransferBytes { get; init; } = ProtocolLimits.MaxDataTransferBytes;

    /// <summary>max_msg_fds we advertise: 0 to <see cref="ProtocolLimits.MaxPeerMessageFds"/>; default <see cref="ProtocolLimits.MaxMessageFds"/> (8).</summary>
    public int MaxMessageFds { get; init; } = ProtocolLimits.MaxMessageFds;

    /// <summary>
    /// Largest data chunk we put in one outgoing REGION_WRITE / MIG_DATA_WRITE to a server without the twin socket.
    /// 64 KiB by default: libvfio-user reads a body with one recv() and desyncs on larger ones (spec §10.1 item 1).
    /// A server that enabled the twin socket (ours; libvfio-user never does) gets its max_data_xfer_size instead.
    /// 512 B to <see cref="ProtocolLimits.MaxPeerDataTransferBytes"/>.
    /// </summary>
    public int WriteChunkBytes { get; init; } = VfioUserTuning.LibVfioUserChunkBytes;

    /// <summary>
    /// MIG_DATA_READ / MIG_DATA_WRITE requests kept in flight at once (replies come in command order), 1 to
    /// <see cref="MaxPipelineDepth"/>. A reply that arrives before the reader hands over its buffer lands in a pooled
    /// overflow array of up to one chunk, so depth × chunk bounds that memory. 4 is the fastest measured here; 64 ran
    /// about 20 % slower and 1100 about 2.5× slower (docs/performance.md).
    /// </summary>
    public int PipelineDepth { get; init; } = 4;

    /// <summary>The largest <see cref="PipelineDepth"/> accepted.</summary>
    public const int MaxPipelineDepth = 64;

    /// <summary>
    /// Ask for a twin socket (spec §4.3) so the server's DMA_READ/DMA_WRITE do not share the socket with our commands
    /// (libvfio-user cannot take a command while it awaits a DMA reply, spec §10.1 item 6). A server that does not
    /// enable it is used over the main socket as before. Needs <see cref="MaxMessageFds"/> &gt; 0.
    /// </summary>
    public bool TwinSocket { get; init; } = true;

    /// <summary>
    /// How long the read loop waits for a reader to hand over its buffer for a MIG_DATA_READ reply that has arrived,
    /// before the data goes to an overflow array. Replies of other commands never wait on it: sending any other command
    /// releases the replies still waiting first. (Tests set it to infinite to show that.)
    /// </summary>
    internal TimeSpan ReaderWait { get; init; } = TimeSpan.FromMilliseconds(200);

    /// <summary>Logging.</summary>
    public ILoggerFactory LoggerFactory { get; init; } = NullLoggerFactory.Instance;

    /// <summary>Checks each value against its documented range.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A value is out of range.</exception>
    public void Validate()
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxDataTransferBytes, OptionRanges.MinDataTransferBytes);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(MaxDataTransferBytes, ProtocolLimits.MaxPeerDataTransferBytes);
        ArgumentOutOfRangeException.ThrowIfLessThan(WriteChunkBytes, OptionRanges.MinDataTransferBytes);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(WriteChunkBytes, ProtocolLimits.MaxPeerDataTransferBytes);
        OptionRanges.CheckMessageFds(MaxMessageFds);
        if (PipelineDepth is < 1 or > MaxPipelineDepth)
            throw new ArgumentOutOfRangeException(nameof(PipelineDepth), PipelineDepth, $"PipelineDepth must be 1..{MaxPipelineDepth}");
        ArgumentNullException.ThrowIfNull(LoggerFactory);
    }
}
