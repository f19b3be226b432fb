namespace Vfio.User.Protocol;

/// <summary>
/// A header the receiver cannot frame (msg_size below 16 or above the limit): the body was not read, the stream is
/// lost. The receiver answers EINVAL to <see cref="Header"/> (if it was a command) and closes.
/// A <see cref="VfioException"/> with <see cref="Errno.EPROTO"/>.
/// </summary>
internal sealed class VfioUserFramingException(VfioUserHeader header, string message) : VfioException(Errno.EPROTO, "vfio-user", message)
{
    /// <summary>The offending header.</summary>
    public VfioUserHeader Header { get; } = header;
}
