namespace Vfio.Net;

/// <summary>
/// Wire constants of the host-to-host migration transport (docs/network.md). Every length a peer
/// supplies is checked against one of these before anything is allocated.
/// </summary>
internal static class NetProtocol
{
    /// <summary>The 8-byte magic that opens every hello and challenge: ASCII <c>VFIOMIG</c> and a zero byte.</summary>
    public static ReadOnlySpan<byte> Magic => "VFIOMIG\0"u8;

    /// <summary>
    /// The protocol version this build speaks. 2: the receiver proves itself first, session keys, every frame
    /// sealed with AES-256-GCM (1 had a token proof only and CRC-32C frames).
    /// </summary>
    public const ushort Version = 2;

    /// <summary>Size of the client hello.</summary>
    public const int HelloSize = 64;

    /// <summary>Size of the fixed part of the server challenge (a reason text, or on success the receiver's proof, follows).</summary>
    public const int ChallengeSize = 48;

    /// <summary>Size of a proof (HMAC-SHA256), the receiver's and the sender's.</summary>
    public const int ProofSize = 32;

    /// <summary>Size of the fixed part of the server verdict (a reason text may follow).</summary>
    public const int VerdictSize = 4;

    /// <summary>Longest refusal reason a peer may send, in bytes of UTF-8.</summary>
    public const int MaxReasonLength = 512;

    /// <summary>Size of a frame header (16 bytes of fields + a CRC32C of them).</summary>
    public const int FrameHeaderSize = 20;

    /// <summary>Room a frame buffer keeps after the payload: the larger of the two trailers.</summary>
    public const int FrameTrailerSize = TagSize;

    /// <summary>Trailer of a sealed frame: the AES-GCM tag.</summary>
    public const int TagSize = 16;

    /// <summary>Trailer of an unsealed frame (<c>--insecure</c>): CRC32C.</summary>
    public const int CrcTrailerSize = 4;

    /// <summary>Largest frame payload accepted from a peer.</summary>
    public const int MaxFramePayload = 4 << 20;

    /// <summary>Most channels one migration may use.</summary>
    public const int MaxChannels = 64;
}
