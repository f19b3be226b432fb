using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Vfio.User.Protocol;

namespace Vfio.User.Server;

/// <summary>Server settings.</summary>
public sealed record VfioUserServerOptions
{
    /// <summary>The defaults.</summary>
    public static VfioUserServerOptions Default { get; } = new();

    /// <summary>
    /// max_data_xfer_size we advertise (and accept in one message): 512 B to
    /// <see cref="ProtocolLimits.MaxDataTransferBytes"/> (1 MiB, the default).
    /// </summary>
    public int MaxDataTransferBytes { get; init; } = ProtocolLimits.MaxDataTransferBytes;

    /// <summary>max_msg_fds we advertise: 0 to <see cref="ProtocolLimits.MaxPeerMessageFds"/>; default <see cref="ProtocolLimits.MaxMessageFds"/> (8).</summary>
    public int MaxMessageFds { get; init; } = ProtocolLimits.MaxMessageFds;

    /// <summary>
    /// How long a new client may take to complete VERSION. Clients are served one at a time, so a peer that connects
    /// and stays silent would otherwise block every later client.
    /// </summary>
    public TimeSpan HandshakeTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Logging.</summary>
    public ILoggerFactory LoggerFactory { get; init; } = NullLoggerFactory.Instance;

    /// <summary>Checks each value against its documented range.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A value is out of range.</exception>
    public void Validate()
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxDataTransferBytes, OptionRanges.MinDataTransferBytes);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(MaxDataTransferBytes, ProtocolLimits.MaxDataTransferBytes);
        OptionRanges.CheckMessageFds(MaxMessageFds);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(HandshakeTimeout, TimeSpan.Zero);
        ArgumentNullException.ThrowIfNull(LoggerFactory);
    }
}
