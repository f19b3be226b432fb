using System.Buffers.Binary;

namespace Vfio.Net;

/// <summary>
/// The client hello (64 bytes, big-endian), first bytes on every connection after TLS:
/// <code>
///  0               8        10     11     12       14       16                32               64
///  +---------------+--------+------+------+--------+--------+-----------------+----------------+
///  | "VFIOMIG\0"   | version| kind | flags| index  | count  | session id (16) | client nonce   |
///  +---------------+--------+------+------+--------+--------+-----------------+----------------+
/// </code>
/// kind 0 = control channel (index 0), 1 = data channel; flags bit 0 = the sender holds a token, bit 1 = it seals
/// every frame (it has TLS or a token; clear only with --insecure).
/// </summary>
internal sealed record NetHello(ushort Version, byte Kind, byte Flags, ushort ChannelIndex, ushort ChannelCount, Guid SessionId, byte[] Nonce)
{
    /// <summary>Flag: the sender holds a pre-shared token and will prove it.</summary>
    public const byte FlagHasToken = 1;

    /// <summary>Flag: the sender seals every frame (same value as <see cref="NetHandshake.FlagSealed"/>).</summary>
    public const byte FlagSealed = NetHandshake.FlagSealed;

    /// <summary>True for the control channel.</summary>
    public bool IsControl => Kind == 0;

    /// <summary>Encodes the 64 bytes.</summary>
    public byte[] Encode()
    {
        var b = new byte[NetProtocol.HelloSize];
        NetProtocol.Magic.CopyTo(b);
        BinaryPrimitives.WriteUInt16BigEndian(b.AsSpan(8), Version);
        b[10] = Kind;
        b[11] = Flags;
        BinaryPrimitives.WriteUInt16BigEndian(b.AsSpan(12), ChannelIndex);
        BinaryPrimitives.WriteUInt16BigEndian(b.AsSpan(14), ChannelCount);
        SessionId.TryWriteBytes(b.AsSpan(16, 16), bigEndian: true, out _);
        Nonce.AsSpan(0, 32).CopyTo(b.AsSpan(32));
        return b;
    }

    /// <summary>Decodes; returns null with a reason when the bytes are not a hello of any version.</summary>
    public static NetHello? TryDecode(ReadOnlySpan<byte> b, out string? reason)
    {
        reason = null;
        if (b.Length != NetProtocol.HelloSize || !b[..8].SequenceEqual(NetProtocol.Magic))
        {
            reason = "the first bytes are not a vfio-mig hello (wrong program or TLS/plain mismatch)";
            return null;
        }
        var hello = new NetHello(
            BinaryPrimitives.ReadUInt16BigEndian(b[8..]), b[10], b[11],
            BinaryPrimitives.ReadUInt16BigEndian(b[12..]), BinaryPrimitives.ReadUInt16BigEndian(b[14..]),
            new Guid(b.Slice(16, 16), bigEndian: true), b.Slice(32, 32).ToArray());
        if (hello.Kind > 1)
            reason = $"unknown channel kind {hello.Kind}";
        else if (hello.ChannelCount is 0 or > NetProtocol.MaxChannels)
            reason = $"channel count {hello.ChannelCount} is outside 1..{NetProtocol.MaxChannels}";
        else if (hello.ChannelIndex >= hello.ChannelCount)
            reason = $"channel index {hello.ChannelIndex} is not below the count {hello.ChannelCount}";
        else if (hello.IsControl != (hello.ChannelIndex == 0))
            reason = "channel 0 must be the control channel and only channel 0";
        return hello;
    }
}
