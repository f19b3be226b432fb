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
