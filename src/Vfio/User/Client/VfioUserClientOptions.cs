using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Vfio.User.Protocol;

namespace Vfio.User.Client;

/// <summary>Client settings.</summary>
public sealed record VfioUserClientOptions
{
    /// <summary>The defaults.</summary>
    public static VfioUserClientOptions Default { get; } = new();

    /// <summary>max_data_xfer_size we advertise: the largest data count we accept (MIG_DATA_READ size, DMA_WRITE count).</summary>
    public int MaxDataTransferSize { get; init; } = ProtocolLimits.MaxDataTransferSize;

    /// <summary>max_msg_fds we advertise.</summary>
    public int MaxMessageFds { get; init; } = ProtocolLimits.MaxMessageFds;

    /// <summary>
    /// Largest data chunk we put in one outgoing REGION_WRITE / MIG_DATA_WRITE. 64 KiB by default: libvfio-user reads a
    /// body with one recv() and desyncs on larger ones (spec §10.1 item 1).
    /// </summary>
    public int WriteChunkSize { get; init; } = ProtocolLimits.SafeChunkToLibVfioUser;

    /// <summary>MIG_DATA_READ / MIG_DATA_WRITE requests kept in flight at once (replies come in command order).</summary>
    public int PipelineDepth { get; init; } = 4;

    /// <summary>
    /// Ask for a twin socket (spec §4.3) so the server's DMA_READ/DMA_WRITE do not share the socket with our commands
    /// (libvfio-user cannot take a command while it awaits a DMA reply, spec §10.1 item 6). A server that does not
    /// enable it is used over the main socket as before. Needs <see cref="MaxMessageFds"/> &gt; 0.
    /// </summary>
    public bool TwinSocket { get; init; } = true;

    /// <summary>Logging.</summary>
    public ILoggerFactory LoggerFactory { get; init; } = NullLoggerFactory.Instance;
}
