using Vfio.Device;
using Vfio.Interop;
using Vfio.Migration;
using Vfio.Uapi;

namespace Vfio.Kernel;

/// <summary>
/// A migration data fd returned by SET MIG_DEVICE_STATE (spec §4): read on a saving fd, write on a resuming
/// fd, VFIO_MIG_GET_PRECOPY_INFO (0x3B79) on a saving fd in PRE_COPY. Owns and closes the descriptor.
/// </summary>
/// <remarks>
/// <list type="bullet">
/// <item>The fd is switched to O_NONBLOCK, so a driver that would block in read/write (mlx5) answers EAGAIN
/// instead of holding a thread; the stream then polls in short slices, honouring cancellation, and retries.</item>
/// <item>EINTR: the call is retried.</item>
/// <item>ENOMSG (PRE_COPY temporary end of stream): thrown as <see cref="VfioException"/> ENOMSG; the stream stays usable.</item>
/// <item>0 from read: end of stream (permanent in STOP_COPY).</item>
/// <item>Any other error (ENODEV for a terminated fd, EFAULT, ENOMEM, …) is thrown and the stream is poisoned:
/// it never touches the descriptor again and every later call throws the same errno.</item>
/// </list>
/// </remarks>
public sealed class KernelMigrationDataStream : IMigrationDataStream
{
    private const int PollSliceMilliseconds = 50;

    private readonly SafeFdHandle _fd;
    private readonly string _name;
    private VfioException? _fault;

    internal KernelMigrationDataStream(SafeFdHandle fd, DataSessionKind kind, string name)
    {
        _fd = fd;
        Kind = kind;
        _name = name;
        MakeNonBlocking();
    }

    /// <inheritdoc/>
    public DataSessionKind Kind { get; }

    /// <summary>The descriptor number (for diagnostics and tests).</summary>
    public int Fd => _fd.Fd;

    /// <summary>True once an error other than EINTR/EAGAIN/ENOMSG was seen; the descriptor is no longer used.</summary>
    public bool IsFaulted => _fault is not null;

    /// <inheritdoc/>
    public async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            CheckUsable("read");
            long n = ReadOnce(buffer.Span, out var errno);
            if (n >= 0)
                return (int)n;
            switch (errno)
            {
                case Errno.EINTR:
                    continue;
                case Errno.EAGAIN:
                    await WaitReadyAsync(Interop.Interop.POLLIN, cancellationToken).ConfigureAwait(false);
                    continue;
                case Errno.ENOMSG:
                    throw new VfioException(Errno.ENOMSG, $"read {_name}",
                        "no data for now: temporary end of the pre-copy stream (poll, or ask VFIO_MIG_GET_PRECOPY_INFO, then read again)");
                default:
                    throw Fault(errno, "read");
            }
        }
    }

    /// <inheritdoc/>
    public async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        int done = 0;
        while (done < buffer.Length)
        {
            cancellationToken.ThrowIfCancellationRequested();
            CheckUsable("write");
            long n = WriteOnce(buffer.Span[done..], out var errno);
            if (n > 0)
            {
                done += (int)n;
                continue;
            }
            if (n == 0)
                throw Fault(Errno.EIO, "write", "the kernel accepted no bytes");
            switch (errno)
            {
                case Errno.EINTR:
                    continue;
                case Errno.EAGAIN:
                    await WaitReadyAsync(Interop.Interop.POLLOUT, cancellationToken).ConfigureAwait(false);
                    continue;
                default:
                    throw Fault(errno, "write");
            }
        }
    }

    /// <inheritdoc/>
    public ValueTask<PrecopyEstimate> GetPrecopyInfoAsync(CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        return ValueTask.FromResult(GetPrecopyInfo());
    }

    /// <summary>VFIO_MIG_GET_PRECOPY_INFO on this fd, synchronously.</summary>
    public PrecopyEstimate GetPrecopyInfo()
    {
        CheckUsable("VFIO_MIG_GET_PRECOPY_INFO");
        Span<byte> info = stackalloc byte[VfioPrecopyInfo.Size];
        new VfioPrecopyInfo(VfioPrecopyInfo.Size, 0, 0, 0).Encode(info);
        while (true)
        {
            int rc = PrecopyIoctl(info, out var errno);
            if (rc >= 0)
                break;
            if (errno == Errno.EINTR)
                continue;
            // EINVAL (not in PRE_COPY) and ENOTTY (resuming fd, or a kernel before 6.2) say nothing about the
            // stream itself, so they do not poison it; ENODEV and the rest do.
            string? why = errno switch
            {
                Errno.EINVAL => "the device is not in PRE_COPY or PRE_COPY_P2P",
                Errno.ENOTTY => "this fd has no precopy-info ioctl (a resuming fd, or a kernel before Linux 6.2)",
                Errno.ENODEV => "the data fd was terminated (its session ended or the device was reset)",
                _ => null,
            };
            if (errno is Errno.EINVAL or Errno.ENOTTY)
                Interop.Interop.ThrowIo(errno, $"VFIO_MIG_GET_PRECOPY_INFO on {_name}", _ => why);
            throw Fault(errno, "VFIO_MIG_GET_PRECOPY_INFO", why);
        }
        var result = VfioPrecopyInfo.Decode(info);
        return new PrecopyEstimate(result.InitialBytes, result.DirtyBytes, (result.Flags & VfioPrecopyInfo.FlagReinit) != 0);
    }

    /// <summary>Closes the descriptor. Closing a data fd does not change the device state (spec §4.1).</summary>
    public ValueTask DisposeAsync()
    {
        _fd.Dispose();
        return ValueTask.CompletedTask;
    }

    private void MakeNonBlocking()
    {
        // Best effort: a descriptor that refuses F_SETFL keeps blocking semantics, which every driver supports.
        int flags = Interop.Interop.Fcntl(_fd, Interop.Interop.F_GETFL, 0);
        if (flags >= 0 && (flags & Interop.Interop.O_NONBLOCK) == 0)
            _ = Interop.Interop.Fcntl(_fd, Interop.Interop.F_SETFL, flags | Interop.Interop.O_NONBLOCK);
    }

    /// <summary>True when the descriptor is in non-blocking mode (tests).</summary>
    internal bool IsNonBlocking => (Interop.Interop.Fcntl(_fd, Interop.Interop.F_GETFL, 0) & Interop.Interop.O_NONBLOCK) != 0;

    private void CheckUsable(string what)
    {
        ObjectDisposedException.ThrowIf(_fd.IsClosed, this);
        if (_fault is { } fault)
            throw new VfioException(fault.Errno, $"{what} {_name}",
                $"this data fd already failed with {VfioException.NameOf(fault.Errno)} and is not used again", fault);
    }

    private VfioException Fault(Errno errno, string what, string? why = null)
    {
        why ??= errno switch
        {
            Errno.ENODEV => "the data fd was terminated: its session ended (e.g. STOP_COPY>STOP, RESUMING>STOP) or the device was reset or closed",
            Errno.EBADF => Kind == DataSessionKind.Saving ? "a saving fd is read-only" : "a resuming fd is write-only",
            Errno.ENOMEM => "the data is larger than the device can hold",
            _ => null,
        };
        string message = why is null
            ? System.Runtime.InteropServices.Marshal.GetPInvokeErrorMessage((int)errno)
            : $"{System.Runtime.InteropServices.Marshal.GetPInvokeErrorMessage((int)errno)} — {why}";
        _fault = new VfioException(errno, $"{what} {_name}", message);
        return _fault;
    }

    private async ValueTask WaitReadyAsync(short events, CancellationToken cancellationToken)
    {
        while (!PollOnce(events, PollSliceMilliseconds))
        {
            cancellationToken.ThrowIfCancellationRequested();
            await Task.Yield();
        }
    }

    private unsafe bool PollOnce(short events, int timeoutMilliseconds)
    {
        bool added = false;
        _fd.DangerousAddRef(ref added);
        try
        {
            var pfd = new Interop.Interop.PollFd { Fd = _fd.Fd, Events = events };
            int rc = Interop.Interop.Poll(&pfd, 1, timeoutMilliseconds);
            if (rc < 0)
            {
                var errno = Interop.Interop.LastErrno;
                if (errno == Errno.EINTR)
                    return false;
                throw Fault(errno, "poll");
            }
            return rc > 0;
        }
        finally
        {
            if (added)
                _fd.DangerousRelease();
        }
    }

    private unsafe long ReadOnce(Span<byte> buffer, out Errno errno)
    {
        fixed (byte* p = buffer)
        {
            long n = Interop.Interop.Read(_fd, p, (nuint)buffer.Length);
            errno = n < 0 ? Interop.Interop.LastErrno : Errno.None;
            return n;
        }
    }

    private unsafe long WriteOnce(ReadOnlySpan<byte> buffer, out Errno errno)
    {
        fixed (byte* p = buffer)
        {
            long n = Interop.Interop.Write(_fd, p, (nuint)buffer.Length);
            errno = n < 0 ? Interop.Interop.LastErrno : Errno.None;
            return n;
        }
    }

    private unsafe int PrecopyIoctl(Span<byte> info, out Errno errno)
    {
        fixed (byte* p = info)
        {
            int rc = Interop.Interop.Ioctl(_fd, VfioIoctl.VFIO_MIG_GET_PRECOPY_INFO, p);
            errno = rc < 0 ? Interop.Interop.LastErrno : Errno.None;
            return rc;
        }
    }
}
