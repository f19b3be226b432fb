using Vfio.Interop;
using static Vfio.Interop.Interop;

namespace Vfio.User.Transport;

/// <summary>
/// A kernel pipe (both ends non-blocking, close-on-exec) that holds one MIG_DATA_READ reply's data between the
/// socket it came from and the socket it goes to: <c>splice(2)</c> moves the bytes in and out by reference, so
/// they are never copied into this process (<see cref="SplicedChunk"/>). Sized with F_SETPIPE_SZ to a whole reply's
/// bytes: the kernel counts a pipe in slots of one page reference each (a socket's page may hold up to 32 KiB), so
/// it takes at least that much, and what does not fit stays in the socket. <see cref="Count"/> is what it holds, by
/// our own count.
/// </summary>
internal sealed class KernelPipe(SafeFdHandle readEnd, SafeFdHandle writeEnd) : IDisposable
{
    /// <summary>The end bytes leave by.</summary>
    public SafeFdHandle ReadEnd => readEnd;

    /// <summary>The end bytes enter by.</summary>
    public SafeFdHandle WriteEnd => writeEnd;

    /// <summary>Bytes in the pipe: added by whoever splices in, taken by whoever splices or reads out.</summary>
    public int Count { get; set; }

    /// <summary>A pipe of at least <paramref name="capacity"/> bytes; null when the kernel refuses one that large (fs.pipe-max-size, or the user's pipe quota).</summary>
    public static unsafe KernelPipe? TryCreate(int capacity)
    {
        int* fds = stackalloc int[2];
        if (Pipe2(fds, O_CLOEXEC | O_NONBLOCK) < 0)
            return null;
        var readEnd = new SafeFdHandle(fds[0]);
        var writeEnd = new SafeFdHandle(fds[1]);
        if (Fcntl(writeEnd, F_SETPIPE_SZ, capacity) < capacity) // the size it got, or -1
        {
            readEnd.Dispose();
            writeEnd.Dispose();
            return null;
        }
        return new KernelPipe(readEnd, writeEnd);
    }

    /// <summary>Reads <paramref name="destination"/>.Length bytes that are in the pipe.</summary>
    /// <exception cref="VfioException">EIO when the pipe holds fewer.</exception>
    public unsafe void ReadExactly(Span<byte> destination)
    {
        int done = 0;
        fixed (byte* p = destination)
        {
            while (done < destination.Length)
            {
                nint n = Read(ReadEnd, p + done, (nuint)(destination.Length - done));
                if (n > 0)
                {
                    done += (int)n;
                    continue;
                }
                var errno = n == 0 ? Errno.EIO : LastErrno;
                if (errno == Errno.EINTR)
                    continue;
                throw new VfioException(errno == Errno.EAGAIN ? Errno.EIO : errno, "read held migration data", $"the kernel pipe gave {done} of the {destination.Length} bytes it should hold");
            }
        }
        Count -= destination.Length;
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        ReadEnd.Dispose();
        WriteEnd.Dispose();
    }
}
