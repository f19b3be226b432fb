using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Vfio.User.Protocol;

namespace Vfio.User.Server;

/// <summary>Server settings.</summary>
public sealed record VfioUserServerOptions
{
    /// <summary>The defaults.</summary>
    public static VfioUserServerOptions Default { get; } = new();

    /// <summary>max_data_xfer_size we advertise (and accept in one message).</summary>
    public int MaxDataTransferSize { get; init; } = ProtocolLimits.MaxDataTransferSize;

    /// <summary>max_msg_fds we advertise.</summary>
    public int MaxMessageFds { get; init; } = ProtocolLimits.MaxMessageFds;

    /// <summary>
    /// How long a new client may take to complete VERSION. Clients are served one at a time, so a peer that connects
    /// and stays silent would otherwise block every later client.
    /// </summary>
    public TimeSpan HandshakeTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Logging.</summary>
    public ILoggerFactory LoggerFactory { get; init; } = NullLoggerFactory.Instance;
}
