using System.Buffers.Binary;
using System.Text;

namespace Vfio.Net;

/// <summary>
/// The receiver's final word, carried in a <see cref="NetFrameType.Status"/> frame:
/// ok(1) errno(i32) message-length(u16) message digest-length(u8, ≤ 64) digest note-length(u16) note
/// [kind-length(u8, ≤ 32) kind]. The kind is optional on decode: a receiver older than it ends after the note.
/// </summary>
/// <param name="Ok">True when the destination loaded and runs the state.</param>
/// <param name="Errno">0, or why it failed.</param>
/// <param name="Message">Plain words.</param>
/// <param name="Digest">SHA-256 of the destination state when the receiver could read it, else empty.</param>
/// <param name="Note">Why there is no digest, if there is none.</param>
/// <param name="DigestKind">What the digest covers (see <see cref="NetDigest.Kind"/>); empty when unspecified.</param>
public sealed record NetStatus(bool Ok, Errno Errno, string Message, byte[] Digest, string Note, string DigestKind = "")
{
    /// <summary>Encodes the payload.</summary>
    public byte[] Encode()
    {
        byte[] msg = Clip(Message), note = Clip(Note), kind = NetDigest.EncodeKind(DigestKind);
        if (Digest.Length > 64)
            throw new ArgumentException("digest too long", nameof(Digest));
        var b = new byte[1 + 4 + 2 + msg.Length + 1 + Digest.Length + 2 + note.Length + 1 + kind.Length];
        int o = 0;
        b[o++] = Ok ? (byte)1 : (byte)0;
        BinaryPrimitives.WriteInt32BigEndian(b.AsSpan(o), (int)Errno);
        o += 4;
        BinaryPrimitives.WriteUInt16BigEndian(b.AsSpan(o), (ushort)msg.Length);
        o += 2;
        msg.CopyTo(b, o);
        o += msg.Length;
        b[o++] = (byte)Digest.Length;
        Digest.CopyTo(b, o);
        o += Digest.Length;
        BinaryPrimitives.WriteUInt16BigEndian(b.AsSpan(o), (ushort)note.Length);
        o += 2;
        note.CopyTo(b, o);
        o += note.Length;
        b[o++] = (byte)kind.Length;
        kind.CopyTo(b, o);
        return b;
    }

    /// <summary>Decodes; EBADMSG when a length runs past the payload.</summary>
    public static NetStatus Decode(ReadOnlySpan<byte> b)
    {
        try
        {
            int o = 0;
            bool ok = b[o++] != 0;
            var errno = (Errno)BinaryPrimitives.ReadInt32BigEndian(b[o..]);
            o += 4;
            int ml = BinaryPrimitives.ReadUInt16BigEndian(b[o..]);
            o += 2;
            string msg = Encoding.UTF8.GetString(b.Slice(o, Math.Min(ml, NetProtocol.MaxReasonLength)));
            o += ml;
            int dl = b[o++];
            if (dl > 64)
                throw new ArgumentOutOfRangeException(nameof(b));
            byte[] digest = b.Slice(o, dl).ToArray();
            o += dl;
            int nl = BinaryPrimitives.ReadUInt16BigEndian(b[o..]);
            o += 2;
            string note = Encoding.UTF8.GetString(b.Slice(o, Math.Min(nl, NetProtocol.MaxReasonLength)));
            o += nl;
            string kind = "";
            if (o < b.Length)
            {
                int kl = b[o++];
                kind = NetDigest.DecodeKind(b.Slice(o, kl));
            }
            return new NetStatus(ok, errno, msg, digest, note, kind);
        }
        catch (ArgumentOutOfRangeException e)
        {
            throw new VfioException(Errno.EBADMSG, "decode status", "the status frame is truncated or malformed", e);
        }
    }

    /// <summary>Encodes an abort payload: errno(i32) + UTF-8 reason.</summary>
    public static byte[] EncodeAbort(Errno errno, string reason)
    {
        byte[] text = Clip(reason);
        var b = new byte[4 + text.Length];
        BinaryPrimitives.WriteInt32BigEndian(b, (int)errno);
        text.CopyTo(b, 4);
        return b;
    }

    /// <summary>Decodes an abort payload.</summary>
    public static (Errno Errno, string Reason) DecodeAbort(ReadOnlySpan<byte> b)
        => b.Length < 4
            ? (Errno.EPROTO, "(no reason given)")
            : ((Errno)BinaryPrimitives.ReadInt32BigEndian(b), Encoding.UTF8.GetString(b[4..Math.Min(b.Length, 4 + NetProtocol.MaxReasonLength)]));

    private static byte[] Clip(string s)
    {
        byte[] t = Encoding.UTF8.GetBytes(s);
        return t.Length > NetProtocol.MaxReasonLength ? t[..NetProtocol.MaxReasonLength] : t;
    }
}
