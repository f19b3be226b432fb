using System.Buffers.Binary;
using System.Security.Cryptography;

namespace Vfio.Net;

/// <summary>
/// AES-256-GCM for the frames of one channel in one direction. The nonce is a frame counter kept by both ends
/// (4 zero bytes, then the counter as u64 big-endian), never sent: a frame that is dropped, replayed, reordered,
/// or moved from another channel, direction or session (each has its own key) fails authentication. The frame
/// header is the associated data, so its type, flags, length and sequence number are covered too.
/// </summary>
internal sealed class NetFrameCipher : IDisposable
{
    private readonly AesGcm _aes;
    private ulong _counter;

    public NetFrameCipher(ReadOnlySpan<byte> key) => _aes = new AesGcm(key, NetProtocol.TagSize);

    /// <summary>Frames sealed or opened so far.</summary>
    public ulong Counter => _counter;

    /// <summary>Encrypts <paramref name="payload"/> in place and writes the tag; the next counter value is used.</summary>
    public void Seal(ReadOnlySpan<byte> header, Span<byte> payload, Span<byte> tag)
    {
        Span<byte> nonce = stackalloc byte[12];
        Nonce(nonce);
        _aes.Encrypt(nonce, payload, payload, tag, header);
    }

    /// <summary>Decrypts <paramref name="payload"/> in place; false when the frame is not the next authentic one.</summary>
    public bool Open(ReadOnlySpan<byte> header, Span<byte> payload, ReadOnlySpan<byte> tag)
    {
        Span<byte> nonce = stackalloc byte[12];
        Nonce(nonce);
        try
        {
            _aes.Decrypt(nonce, payload, tag, payload, header);
            return true;
        }
        catch (AuthenticationTagMismatchException)
        {
            payload.Clear();
            return false;
        }
    }

    private void Nonce(Span<byte> nonce)
    {
        if (_counter == ulong.MaxValue)
            throw new VfioException(Errno.EOVERFLOW, "frame cipher", "the frame counter is exhausted");
        nonce[..4].Clear();
        BinaryPrimitives.WriteUInt64BigEndian(nonce[4..], _counter++);
    }

    public void Dispose() => _aes.Dispose();
}
