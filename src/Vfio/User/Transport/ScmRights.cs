using System.Runtime.InteropServices;
using Vfio.Interop;
using static Vfio.Interop.Interop;

namespace Vfio.User.Transport;

/// <summary>
/// SCM_RIGHTS control messages: the <c>msg_control</c> bytes that carry fds with a <c>sendmsg</c> and come back
/// from a <c>recvmsg</c>. Layout (x86_64), one cmsg per CMSG_SPACE:
/// <code>
/// +--------------------+----------------+---------------+------------------------+---------+
/// | cmsg_len (8)       | cmsg_level (4) | cmsg_type (4) | int fd[n] (4 n)        | pad → 8 |
/// | 16 + 4 n           | SOL_SOCKET     | SCM_RIGHTS    |                        |         |
/// +--------------------+----------------+---------------+------------------------+---------+
/// </code>
/// Ownership: a sender keeps its handles (the kernel installs copies in the peer), and each is held with
/// <see cref="SafeHandle.DangerousAddRef"/> for the call so a concurrent close cannot recycle its number; a
/// receiver wraps every fd in a <see cref="SafeFdHandle"/> the moment it is parsed, so nothing leaks if the
/// receive then fails (MSG_CTRUNC, a bad header).
/// </summary>
internal static class ScmRights
{
    /// <summary>Bytes of control buffer for one cmsg carrying <paramref name="fdCount"/> fds (CMSG_SPACE).</summary>
    public static int ControlSpace(int fdCount) => CMsgSpace(fdCount * sizeof(int));

    /// <summary>
    /// Writes one SCM_RIGHTS cmsg carrying <paramref name="fds"/> into <paramref name="control"/>, which must be
    /// <see cref="ControlSpace"/> bytes; padding is zeroed.
    /// </summary>
    public static void Encode(Span<byte> control, ReadOnlySpan<int> fds)
    {
        if (control.Length != ControlSpace(fds.Length))
            throw new ArgumentException($"the control buffer must be {ControlSpace(fds.Length)} bytes for {fds.Length} fds", nameof(control));
        control.Clear();
        var header = new CMsgHdr { Len = (nuint)CMsgLen(fds.Length * sizeof(int)), Level = SOL_SOCKET, Type = SCM_RIGHTS };
        MemoryMarshal.Write(control, in header);
        MemoryMarshal.AsBytes(fds).CopyTo(control[CMsgHdrSize..]);
    }

    /// <summary>
    /// Takes ownership of every fd in every SCM_RIGHTS cmsg of <paramref name="control"/> (the filled part:
    /// <c>msg_controllen</c> bytes), adding each to <paramref name="fds"/> as it is read. Other cmsg types are
    /// skipped; parsing stops at a header that does not fit (the kernel never writes one).
    /// </summary>
    public static void Decode(ReadOnlySpan<byte> control, List<SafeFdHandle> fds)
    {
        int at = 0;
        while (at + CMsgHdrSize <= control.Length)
        {
            var header = MemoryMarshal.Read<CMsgHdr>(control[at..]);
            if (header.Len < (nuint)CMsgHdrSize || header.Len > (nuint)(control.Length - at))
                break;
            int length = (int)header.Len;
            if (header.Level == SOL_SOCKET && header.Type == SCM_RIGHTS)
            {
                var data = MemoryMarshal.Cast<byte, int>(control.Slice(at + CMsgHdrSize, (length - CMsgHdrSize) / sizeof(int) * sizeof(int)));
                foreach (int fd in data)
                    fds.Add(new SafeFdHandle(fd));
            }
            at += (length + 7) & ~7; // CMSG_ALIGN: the next cmsg starts on an 8-byte boundary
        }
    }

    /// <summary>
    /// Holds every handle of <paramref name="handles"/> (DangerousAddRef) and writes its fd number to
    /// <paramref name="fds"/>; <paramref name="added"/> records which to release. Always pair with
    /// <see cref="Release"/> in a finally, also when this throws part-way.
    /// </summary>
    public static void AddRefs(IReadOnlyList<SafeHandle> handles, Span<int> fds, Span<bool> added)
    {
        for (int i = 0; i < handles.Count; i++)
        {
            handles[i].DangerousAddRef(ref added[i]);
            fds[i] = (int)handles[i].DangerousGetHandle();
        }
    }

    /// <summary>Releases the handles <see cref="AddRefs"/> held.</summary>
    public static void Release(IReadOnlyList<SafeHandle> handles, ReadOnlySpan<bool> added)
    {
        for (int i = 0; i < handles.Count; i++)
        {
            if (added[i])
                handles[i].DangerousRelease();
        }
    }
}
