namespace Vfio.User.Protocol;

/// <summary>
/// Malformed data from the peer that makes the connection unusable (framing lost). The connection closes.
/// A <see cref="VfioException"/> with <see cref="Errno.EPROTO"/>, so one catch covers every errno failure.
/// </summary>
public sealed class VfioUserProtocolException : VfioException
{
    /// <summary>Creates the exception.</summary>
    public VfioUserProtocolException(string message)
        : base(Errno.EPROTO, "vfio-user", message)
    {
    }

    /// <summary>Creates the exception with a cause.</summary>
    public VfioUserProtocolException(string message, Exception inner)
        : base(Errno.EPROTO, "vfio-user", message, inner)
    {
    }

    /// <summary>Creates the exception.</summary>
    public VfioUserProtocolException()
        : base(Errno.EPROTO, "vfio-user")
    {
    }
}
