namespace Vfio.Net;

/// <summary>Status byte of a challenge or verdict: 0 accepts, anything else refuses (a reason text follows).</summary>
public enum NetRefusal : byte
{
    /// <summary>Accepted (challenge: go on with the proof).</summary>
    None = 0,

    /// <summary>The hello's version is not spoken here.</summary>
    VersionMismatch = 1,

    /// <summary>This receiver requires a pre-shared token and the sender offered none.</summary>
    TokenRequired = 2,

    /// <summary>The token proof did not match: the tokens differ.</summary>
    BadProof = 3,

    /// <summary>A data channel named a session that is not open here.</summary>
    UnknownSession = 4,

    /// <summary>The receiver already runs a migration.</summary>
    Busy = 5,

    /// <summary>The hello was malformed.</summary>
    BadHello = 6,

    /// <summary>This receiver requires TLS and the sender spoke plain TCP.</summary>
    TlsRequired = 7,
}
