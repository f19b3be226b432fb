using System.Runtime.InteropServices;
using Vfio.User.Protocol;

namespace Vfio.User.Server;

/// <summary>A reply under construction: payload bytes at offset 16 of <see cref="Buffer"/>, or an errno.</summary>
internal readonly struct OutgoingReply
{
    private OutgoingReply(byte[]? buffer, int length, Errno error, SafeHandle[]? fds, bool closeAfter, bool pooled = false, ReadOnlyMemory<byte> tail = default)
    {
        Tail = tail;
        Pooled = pooled;
        Buffer = buffer;
        Length = length;
        Error = error;
        Fds = fds;
        CloseAfter = closeAfter;
    }

    /// <summary>Whole message buffer (header space + payload), null for an error reply.</summary>
    public byte[]? Buffer { get; }

    /// <summary>Bytes of <see cref="Buffer"/> to send (16 + payload, without <see cref="Tail"/>).</summary>
    public int Length { get; }

    /// <summary>Payload bytes sent after <see cref="Buffer"/> straight from memory the device owns (zero-copy data).</summary>
    public ReadOnlyMemory<byte> Tail { get; }

    /// <summary>The errno of an error reply; None on success.</summary>
    public Errno Error { get; }

    /// <summary>Fds to attach; the reply owns them and the writer closes them once sent (or dropped).</summary>
    public SafeHandle[]? Fds { get; }

    /// <summary>The buffer came from ArrayPool.Shared and goes back after sending.</summary>
    public bool Pooled { get; }

    /// <summary>Close the connection after sending.</summary>
    public bool CloseAfter { get; }

    public static OutgoingReply Ok(ReadOnlySpan<byte> payload, SafeHandle[]? fds = null)
    {
        var buffer = new byte[VfioUserHeader.Size + payload.Length];
        payload.CopyTo(buffer.AsSpan(VfioUserHeader.Size));
        return new OutgoingReply(buffer, buffer.Length, Errno.None, fds, false);
    }

    /// <summary>A reply whose payload was written in place into <paramref name="buffer"/> (length = 16 + payload), optionally followed by <paramref name="tail"/>.</summary>
    public static OutgoingReply InPlace(byte[] buffer, int length, bool pooled, ReadOnlyMemory<byte> tail = default) => new(buffer, length, Errno.None, null, false, pooled, tail);

    public static OutgoingReply Empty => Ok([]);

    public static OutgoingReply Fail(Errno errno, bool closeAfter = false) => new(null, VfioUserHeader.Size, errno == Errno.None ? Errno.EINVAL : errno, null, closeAfter);

    /// <summary>No message: only tells the writer loop to close after what was queued before.</summary>
    public static OutgoingReply CloseMarker => new(null, 0, Errno.None, null, true);

    /// <summary>True for <see cref="CloseMarker"/>.</summary>
    public bool IsCloseMarker => Buffer is null && Error == Errno.None && CloseAfter;

    public OutgoingReply WithClose() => new(Buffer, Length, Error, Fds, true, Pooled, Tail);
}
