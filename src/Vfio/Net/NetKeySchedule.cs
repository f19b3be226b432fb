using System.Security.Cryptography;

namespace Vfio.Net;

/// <summary>The two frame keys of one channel: what this side seals with and what it opens with.</summary>
internal sealed record NetChannelKeys(byte[] Send, byte[] Receive);

/// <summary>
/// Key derivation of the protocol (HKDF-SHA256, RFC 5869). Inputs: the token's key K (or none), the TLS binding B
/// (SHA-256 of the receiver's certificate, or none) and each connection's hello and challenge, which carry the
/// sender's and the receiver's 32-byte nonces.
/// <code>
///  session secret S = HKDF-Extract(salt = SHA-256("vfio-mig/2 session" | hello0 | challenge0),
///                                  ikm  = len(K) | K | len(B) | B)                 (control channel)
///  proof key        = K on the control channel; HKDF-Expand(S, "vfio-mig/2 channel proof") on data channels
///  channel secret   = HKDF-Extract(salt = SHA-256("vfio-mig/2 channel" | hello_i | challenge_i), ikm = S)
///  frame keys       = HKDF-Expand(channel secret, "vfio-mig/2 sender to receiver" / "… receiver to sender", 32)
/// </code>
/// Every session, channel and direction has its own key. Without a token (TLS only) S is secret because the nonces
/// travelled inside TLS; with a token it is secret even on plain TCP.
/// </summary>
internal static class NetKeySchedule
{
    private const int KeySize = 32;

    public static byte[] SessionSecret(NetToken? token, ReadOnlySpan<byte> binding, ReadOnlySpan<byte> hello, ReadOnlySpan<byte> challenge)
    {
        ReadOnlySpan<byte> k = token is null ? [] : token.Key;
        byte[] ikm = [(byte)k.Length, .. k, (byte)binding.Length, .. binding];
        try
        {
            return HKDF.Extract(HashAlgorithmName.SHA256, ikm, Salt("vfio-mig/2 session"u8, hello, challenge));
        }
        finally
        {
            CryptographicOperations.ZeroMemory(ikm);
        }
    }

    public static byte[] DataChannelProofKey(byte[] sessionSecret)
        => HKDF.Expand(HashAlgorithmName.SHA256, sessionSecret, KeySize, "vfio-mig/2 channel proof"u8.ToArray());

    public static NetChannelKeys ChannelKeys(byte[] sessionSecret, ReadOnlySpan<byte> hello, ReadOnlySpan<byte> challenge, bool sender)
    {
        byte[] channel = HKDF.Extract(HashAlgorithmName.SHA256, sessionSecret, Salt("vfio-mig/2 channel"u8, hello, challenge));
        byte[] toReceiver = HKDF.Expand(HashAlgorithmName.SHA256, channel, KeySize, "vfio-mig/2 sender to receiver"u8.ToArray());
        byte[] toSender = HKDF.Expand(HashAlgorithmName.SHA256, channel, KeySize, "vfio-mig/2 receiver to sender"u8.ToArray());
        CryptographicOperations.ZeroMemory(channel);
        return sender ? new NetChannelKeys(toReceiver, toSender) : new NetChannelKeys(toSender, toReceiver);
    }

    private static byte[] Salt(ReadOnlySpan<byte> label, ReadOnlySpan<byte> hello, ReadOnlySpan<byte> challenge)
    {
        using var h = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        h.AppendData(label);
        h.AppendData(hello);
        h.AppendData(challenge);
        return h.GetHashAndReset();
    }
}
