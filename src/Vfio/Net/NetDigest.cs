using System.Text;

namespace Vfio.Net;

/// <summary>A digest of a device's state, what it covers, or why there is none.</summary>
/// <param name="Value">SHA-256 of the state (empty when none could be taken).</param>
/// <param name="Kind">
/// What the digest covers, e.g. <c>bar0</c> or <c>kernel-region0</c> (ASCII, at most <see cref="MaxKindLength"/>
/// bytes). Digests of different kinds are never compared. Empty = unspecified: a peer older than this field.
/// </param>
/// <param name="Note">Why there is no digest (<c>verification skipped: …</c>), if there is none.</param>
public sealed record NetDigest(byte[] Value, string Kind, string Note)
{
    /// <summary>Longest kind label carried on the wire (Status and Bye frames).</summary>
    public const int MaxKindLength = 32;

    /// <summary>No digest, with the reason.</summary>
    public static NetDigest None(string note) => new([], "", note);

    /// <summary>
    /// The verdict on a source and a destination digest: 1 = match, 2 = differ, 3 = not comparable (both
    /// kinds given and different), 0 = a side has no digest. The note says why for 0 and 3.
    /// </summary>
    public static (byte Verdict, string Note) Judge(NetDigest source, NetDigest destination)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(destination);
        if (destination.Value.Length == 0)
            return (0, destination.Note.Length > 0 ? destination.Note : "verification skipped: the destination offers no read-back of its state");
        if (source.Value.Length == 0)
            return (0, source.Note.Length > 0 ? source.Note : "verification skipped: this source offers no read-back of its state");
        if (source.Kind.Length > 0 && destination.Kind.Length > 0 && source.Kind != destination.Kind)
            return (3, NotComparable(source.Kind, destination.Kind));
        return source.Value.AsSpan().SequenceEqual(destination.Value) ? ((byte)1, "") : ((byte)2, "");
    }

    /// <summary>The note both sides print when the two digests cover different things.</summary>
    public static string NotComparable(string sourceKind, string destinationKind)
        => $"verification skipped: the source digest covers {sourceKind} but the destination's covers {destinationKind}, so they are not comparable";

    /// <summary>Longest Bye payload: verdict(1) digest-length(1) digest(≤ 64) kind-length(1) kind(≤ 32).</summary>
    public const int MaxByeLength = 1 + 1 + 64 + 1 + MaxKindLength;

    /// <summary>The Bye payload: the sender's verdict and the source digest with its kind, so the receiver can compare itself.</summary>
    internal static byte[] EncodeBye(byte verdict, NetDigest source)
    {
        byte[] kind = EncodeKind(source.Kind);
        if (source.Value.Length > 64)
            throw new ArgumentException("digest too long", nameof(source));
        return [verdict, (byte)source.Value.Length, .. source.Value, (byte)kind.Length, .. kind];
    }

    /// <summary>Decodes a Bye payload; EBADMSG when malformed.</summary>
    internal static (byte Verdict, NetDigest Source) DecodeBye(ReadOnlySpan<byte> payload)
    {
        int dl = payload.Length > 1 ? payload[1] : -1;
        int kl = dl is >= 0 and <= 64 && payload.Length > 2 + dl ? payload[2 + dl] : -1;
        if (payload.Length < 3 || kl < 0 || kl > MaxKindLength || payload.Length != 3 + dl + kl || payload[0] > 3)
            throw new VfioException(Errno.EBADMSG, "decode goodbye", "the sender's final frame (Bye) is malformed");
        var digest = payload.Slice(2, dl).ToArray();
        string kind = DecodeKind(payload.Slice(3 + dl, kl));
        return (payload[0], new NetDigest(digest, kind, digest.Length == 0 ? "verification skipped: the sender could not compute a source digest" : ""));
    }

    /// <summary>The kind as it goes on the wire: ASCII, clipped to <see cref="MaxKindLength"/> bytes.</summary>
    internal static byte[] EncodeKind(string kind)
    {
        byte[] bytes = Encoding.ASCII.GetBytes(kind);
        return bytes.Length > MaxKindLength ? bytes[..MaxKindLength] : bytes;
    }

    /// <summary>A kind read from the wire; anything beyond <see cref="MaxKindLength"/> bytes is ignored.</summary>
    internal static string DecodeKind(ReadOnlySpan<byte> bytes)
        => Encoding.ASCII.GetString(bytes[..Math.Min(bytes.Length, MaxKindLength)]);
}
