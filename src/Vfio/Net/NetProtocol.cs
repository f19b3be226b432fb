namespace Vfio.Net;

/// <summary>
/// Wire constants of the host-to-host migration transport (docs/network.md). Every length a peer
/// supplies is checked against one of these before anything is allocated.
/// </summary>
public static class NetProtocol
{
    /// <summary>The 8-byte magic that opens every hello and challenge: ASCII <c>VFIOMIG</c> and a zero byte.</summary>
    public static ReadOnlySpan<byte> Magic => "VFIOMIG\0"u8;

    /// <summary>The handshake version this build speaks.</summary>
    public const ushort Version = 1;

    /// <summary>Size of the client hello.</summary>
    public const int HelloSize = 64;

    /// <summary>Size of the fixed part of the server challenge (a reason text may follow).</summary>
    public const int ChallengeSize = 48;

    /// <summary>Size of the client proof (HMAC-SHA256).</summary>
    public const int ProofSize = 32;

    /// <summary>Size of the fixed part of the server verdict (a reason text may follow).</summary>
    public const int VerdictSize = 36;

    /// <summary>Longest refusal reason a peer may send, in bytes of UTF-8.</summary>
    public const int MaxReasonLength = 512;

    /// <summary>Size of a frame header (16 bytes of fields + a CRC32C of them).</summary>
    public const int FrameHeaderSize = 20;

    /// <summary>Size of the CRC32C trailer of a frame.</summary>
    public const int FrameTrailerSize = 4;

    /// <summary>Largest frame payload accepted from a peer.</summary>
    public const int MaxFramePayload = 4 << 20;

    /// <summary>Most channels one migration may use.</summary>
    public const int MaxChannels = 64;
}
