namespace Vfio.User.Protocol;

/// <summary>Malformed data from the peer that makes the connection unusable (framing lost). The connection closes.</summary>
public sealed class VfioUserProtocolException : Exception
{
    /// <summary>Creates the exception.</summary>
    public VfioUserProtocolException(string message)
        : base("EPROTO: vfio-user: " + message)
    {
    }

    /// <summary>Creates the exception with a cause.</summary>
    public VfioUserProtocolException(string message, Exception inner)
        : base("EPROTO: vfio-user: " + message, inner)
    {
    }

    /// <summary>Creates the exception.</summary>
    public VfioUserProtocolException()
        : base("EPROTO: vfio-user protocol error")
    {
    }
}
