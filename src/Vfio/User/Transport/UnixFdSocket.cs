using System.Net.Sockets;
using System.Runtime.InteropServices;
using Vfio.Interop;
using Vfio.User.Protocol;
using static Vfio.Interop.Interop;

namespace Vfio.User.Transport;

/// <summary>
/// One vfio-user stream: an AF_UNIX stream socket carrying framed messages, with fds as SCM_RIGHTS on the
/// <c>sendmsg</c> that carries the message's first byte. Receives: a zero-byte read to wait for data, then
/// <c>recvmsg(MSG_CMSG_CLOEXEC)</c> for exactly the 16 header bytes (fails on MSG_CTRUNC), then the body with
/// plain receives until complete. Sends are serialised; header + payload (+ fds) go out in one <c>sendmsg</c>.
/// The cmsg bytes are <see cref="ScmRights"/>'s.
/// </summary>
internal sealed class UnixFdSocket : IVfioUserTransport, IPipeSplicingTransport
{
    private readonly Socket _socket;
    private readonly SemaphoreSlim _sendLock = new(1, 1);
    private readonly int _maxReceiveFds;
    private int _disposed;

    /// <summary>Wraps a connected AF_UNIX stream socket (takes ownership).</summary>
    public UnixFdSocket(Socket socket, int maxReceiveFds = ProtocolLimits.MaxMessageFds, int maxMessageSize = ProtocolLimits.MaxMessageBytes)
    {
        _socket = socket ?? throw new ArgumentNullException(nameof(socket));
        _maxReceiveFds = maxReceiveFds;
        MaxMessageSize = maxMessageSize;
        EnlargeBuffers(socket, VfioUserTuning.SocketBufferBytes);
    }

    /// <summary>
    /// Asks for send and receive buffers of at least <paramref name="bytes"/> (never shrinks them). With the default
    /// ≈ 208 KiB a 1 MiB data reply crosses in about five fill-and-drain rounds, each waking both sides; with room
    /// for whole replies the STOP_COPY bench went from ≈ 0.8 to ≈ 1.05 of a raw copy given the same buffers. The
    /// kernel caps the request at net.core.wmem_max/rmem_max without an error, so this is best effort.
    /// </summary>
    /// <returns>The send buffer size the kernel reports afterwards (its doubled figure).</returns>
    public static int EnlargeBuffers(Socket socket, int bytes)
    {
        ArgumentNullException.ThrowIfNull(socket);
        try
        {
            if (socket.SendBufferSize < bytes)
                socket.SendBufferSize = bytes;
            if (socket.ReceiveBufferSize < bytes)
                socket.ReceiveBufferSize = bytes;
            return socket.SendBufferSize;
        }
        catch (SocketException)
        {
            return 0; // e.g. a socket the peer already closed: the defaults stay
        }
        catch (ObjectDisposedException)
        {
            return 0;
        }
    }

    /// <inheritdoc/>
    public int MaxMessageSize { get; set; }

    /// <inheritdoc/>
    public bool CarriesFds => true;

    /// <summary>(SO_SNDBUF, SO_RCVBUF) as the kernel reports them (0 once closed).</summary>
    public (int Send, int Receive) BufferSizes => (SendBufferSize, ReceiveBufferSize);

    /// <summary>SO_SNDBUF as the kernel reports it (0 once closed).</summary>
    public int SendBufferSize => ReadOption(static s => s.SendBufferSize);

    /// <summary>SO_RCVBUF as the kernel reports it (0 once closed).</summary>
    public int ReceiveBufferSize => ReadOption(static s => s.ReceiveBufferSize);

    private int ReadOption(Func<Socket, int> read)
    {
        try
        {
            return read(_socket);
        }
        catch (SocketException)
        {
            return 0;
        }
        catch (ObjectDisposedException)
        {
            return 0;
        }
    }

    /// <summary>The underlying socket.</summary>
    public Socket Socket => _socket;

    /// <summary>Connects to a vfio-user server at <paramref name="path"/>.</summary>
    /// <exception cref="VfioException">ENOENT, ECONNREFUSED, EACCES … with the path.</exception>
    public static async Task<UnixFdSocket> ConnectAsync(string path, CancellationToken cancellationToken = default)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            await socket.ConnectAsync(new UnixDomainSocketEndPoint(path), cancellationToken).ConfigureAwait(false);
        }
        catch (SocketException ex)
        {
            socket.Dispose();
            throw SocketErrno.ToException(ex, $"connect to {path}", unixPath: true);
        }
        return new UnixFdSocket(socket);
    }

    /// <summary>A connected pair (socketpair(AF_UNIX, SOCK_STREAM)).</summary>
    public static unsafe (Socket, Socket) CreateSocketPair()
    {
        int* fds = stackalloc int[2];
        CheckIo(SocketPair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), "socketpair(AF_UNIX, SOCK_STREAM)");
        return (new Socket(new SafeSocketHandle(fds[0], ownsHandle: true)), new Socket(new SafeSocketHandle(fds[1], ownsHandle: true)));
    }

    /// <summary>
    /// A connected pair whose second end is only passed on (SCM_RIGHTS), never used here: a plain owned fd. Wrapped in
    /// a <see cref="Socket"/> that nothing references, it would be closed by that socket's finalizer whenever a
    /// collection ran before the send.
    /// </summary>
    public static unsafe (Socket Ours, SafeFdHandle Theirs) CreateSocketPairToPass()
    {
        int* fds = stackalloc int[2];
        CheckIo(SocketPair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), "socketpair(AF_UNIX, SOCK_STREAM)");
        return (new Socket(new SafeSocketHandle(fds[0], ownsHandle: true)), new SafeFdHandle(fds[1]));
    }

    /// <inheritdoc/>
    public async ValueTask SendAsync(ReadOnlyMemory<byte> message, IReadOnlyList<SafeHandle>? fds = null, CancellationToken cancellationToken = default)
    {
        await _sendLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            int sent = 0;
            if (fds is { Count: > 0 })
                sent = await SendWithFdsAsync(message, fds, cancellationToken).ConfigureAwait(false);
            await SendAllAsync(message[sent..], cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _sendLock.Release();
        }
    }

    /// <inheritdoc/>
    public async ValueTask SendInTwoPartsAsync(ReadOnlyMemory<byte> message, ReadOnlyMemory<byte> tail, CancellationToken cancellationToken = default)
    {
        await _sendLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            // Both pieces in one sendmsg first: the head rides with the first data bytes, one syscall fewer.
            long sent = TrySendTwo(message, tail);
            if (sent < 0 && sent != -(int)Errno.EAGAIN && sent != -(int)Errno.EINTR)
                throw ErrnoException((Errno)(int)-sent, "send vfio-user message");
            sent = Math.Max(sent, 0);
            if (sent < message.Length)
            {
                await SendAllAsync(message[(int)sent..], cancellationToken).ConfigureAwait(false);
                sent = message.Length;
            }
            await SendAllAsync(tail[(int)(sent - message.Length)..], cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _sendLock.Release();
        }
    }

    // Caller holds the send lock.
    private async ValueTask SendAllAsync(ReadOnlyMemory<byte> message, CancellationToken cancellationToken)
    {
        int sent = 0;
        while (sent < message.Length)
        {
            int n;
            try
            {
                n = await _socket.SendAsync(message[sent..], SocketFlags.None, cancellationToken).ConfigureAwait(false);
            }
            catch (SocketException ex)
            {
                throw SocketErrno.ToException(ex, "send vfio-user message");
            }
            catch (ObjectDisposedException ex)
            {
                throw new VfioException(Errno.ENOTCONN, "send vfio-user message", "the connection is closed", ex);
            }
            sent += n;
        }
    }

    // Returns bytes sent, or −errno (EAGAIN when the socket buffer is full).
    private unsafe long TrySendTwo(ReadOnlyMemory<byte> first, ReadOnlyMemory<byte> second)
    {
        using var pinFirst = first.Pin();
        using var pinSecond = second.Pin();
        IoVec* iov = stackalloc IoVec[2];
        iov[0] = new IoVec { Base = pinFirst.Pointer, Length = (nuint)first.Length };
        iov[1] = new IoVec { Base = pinSecond.Pointer, Length = (nuint)second.Length };
        var hdr = new MsgHdr { Iov = iov, IovLen = 2 };
        return SendMsgNow(&hdr);
    }

    // One non-blocking sendmsg on our socket, kept alive for the call. Returns bytes sent, or −errno.
    private unsafe long SendMsgNow(MsgHdr* hdr)
    {
        bool socketRef = false;
        try
        {
            _socket.SafeHandle.DangerousAddRef(ref socketRef);
            nint n = SendMsg((int)_socket.SafeHandle.DangerousGetHandle(), hdr, MSG_NOSIGNAL | MSG_DONTWAIT);
            return n >= 0 ? n : -Marshal.GetLastPInvokeError();
        }
        catch (ObjectDisposedException ex)
        {
            throw new VfioException(Errno.ENOTCONN, "send vfio-user message", "the connection is closed", ex);
        }
        finally
        {
            if (socketRef)
                _socket.SafeHandle.DangerousRelease();
        }
    }

    private async ValueTask<int> SendWithFdsAsync(ReadOnlyMemory<byte> message, IReadOnlyList<SafeHandle> fds, CancellationToken cancellationToken)
    {
        while (true)
        {
            long r = TrySendMsg(message, fds);
            if (r >= 0)
                return (int)r;
            var errno = (Errno)(int)-r;
            if (errno == Errno.EINTR)
                continue;
            if (errno != Errno.EAGAIN)
                throw ErrnoException(errno, "sendmsg with SCM_RIGHTS");
            await Task.Delay(1, cancellationToken).ConfigureAwait(false);
        }
    }

    private unsafe long TrySendMsg(ReadOnlyMemory<byte> message, IReadOnlyList<SafeHandle> fds)
    {
        int controlLength = ScmRights.ControlSpace(fds.Count);
        byte* control = stackalloc byte[controlLength];
        Span<int> numbers = stackalloc int[fds.Count];
        Span<bool> added = stackalloc bool[fds.Count];
        try
        {
            ScmRights.AddRefs(fds, numbers, added);
            ScmRights.Encode(new Span<byte>(control, controlLength), numbers);
            using var pin = message.Pin();
            var iov = new IoVec { Base = pin.Pointer, Length = (nuint)message.Length };
            var hdr = new MsgHdr { Iov = &iov, IovLen = 1, Control = control, ControlLen = (nuint)controlLength };
            return SendMsgNow(&hdr);
        }
        finally
        {
            ScmRights.Release(fds, added);
        }
    }

    /// <inheritdoc/>
    public async ValueTask<(VfioUserHeader Header, ReceivedFds Fds)?> ReceiveHeaderAsync(CancellationToken cancellationToken = default)
    {
        var headerBytes = new byte[VfioUserHeader.Size];
        var fds = new List<SafeFdHandle>();
        int got = 0;
        try
        {
            while (got < VfioUserHeader.Size)
            {
                // Try first: while a stream of messages flows the next header is usually there already, and the
                // zero-byte receive (the readiness wait) would cost a round through the event loop for nothing.
                long n;
                try
                {
                    n = TryRecvMsg(headerBytes.AsSpan(got), fds);
                }
                catch (ObjectDisposedException ex)
                {
                    throw new VfioException(Errno.ENOTCONN, "receive vfio-user message", "the connection is closed", ex);
                }
                if (n == -(int)Errno.EAGAIN || n == -(int)Errno.EINTR)
                {
                    await WaitReadableAsync(cancellationToken).ConfigureAwait(false);
                    continue;
                }
                if (n < 0)
                    throw ErrnoException((Errno)(int)-n, "recvmsg");
                if (n == 0)
                {
                    if (got == 0 && fds.Count == 0)
                        return null;
                    throw VfioUserTransportExtensions.ClosedInHeader(got);
                }
                got += (int)n;
            }
            var header = VfioUserFrame.ReadHeader(headerBytes, MaxMessageSize);
            var received = new ReceivedFds([.. fds]);
            fds.Clear();
            return (header, received);
        }
        finally
        {
            foreach (var fd in fds)
                fd.Dispose();
        }
    }

    /// <inheritdoc/>
    public async ValueTask ReceivePayloadAsync(VfioUserHeader header, Memory<byte> destination, CancellationToken cancellationToken = default)
    {
        int read = 0;
        while (read < destination.Length)
        {
            int n;
            try
            {
                n = await _socket.ReceiveAsync(destination[read..], SocketFlags.None, cancellationToken).ConfigureAwait(false);
            }
            catch (SocketException ex)
            {
                throw SocketErrno.ToException(ex, "receive vfio-user message body");
            }
            catch (ObjectDisposedException ex)
            {
                throw new VfioException(Errno.ENOTCONN, "receive vfio-user message body", "the connection is closed", ex);
            }
            if (n == 0)
                throw VfioUserTransportExtensions.ClosedInPayload(header);
            read += n;
        }
    }

    // A zero-byte receive: completes once data (or the end of the stream) is there, without taking any.
    private async ValueTask WaitReadableAsync(CancellationToken cancellationToken)
    {
        try
        {
            await _socket.ReceiveAsync(Memory<byte>.Empty, SocketFlags.None, cancellationToken).ConfigureAwait(false);
        }
        catch (SocketException ex)
        {
            throw SocketErrno.ToException(ex, "receive vfio-user message");
        }
        catch (ObjectDisposedException ex)
        {
            throw new VfioException(Errno.ENOTCONN, "receive vfio-user message", "the connection is closed", ex);
        }
    }

    /// <inheritdoc/>
    public async ValueTask<int> ReceiveIntoPipeAsync(VfioUserHeader header, KernelPipe pipe, int count, CancellationToken cancellationToken = default)
    {
        int moved = 0;
        bool retried = false;
        while (moved < count)
        {
            long n = SpliceNow(_socket.SafeHandle, pipe.WriteEnd, count - moved);
            if (n > 0)
            {
                moved += (int)n;
                pipe.Count += (int)n;
                retried = false;
                continue;
            }
            if (n == 0)
                throw VfioUserTransportExtensions.ClosedInPayload(header);
            if (n == -(int)Errno.EINTR)
                continue;
            if (n != -(int)Errno.EAGAIN)
                throw ErrnoException((Errno)(int)-n, "splice vfio-user message body");
            // EAGAIN: the socket has nothing yet, or the pipe is full. Bytes waiting in the socket mean the latter
            // (once more to be sure: they may have come just now); the rest of the payload is then the caller's.
            if (BytesWaiting() > 0)
            {
                if (retried)
                    break;
                retried = true;
                continue;
            }
            await WaitReadableAsync(cancellationToken).ConfigureAwait(false);
        }
        return moved;
    }

    // FIONREAD on the socket: bytes it holds for us now.
    private int BytesWaiting()
    {
        try
        {
            return _socket.Available;
        }
        catch (SocketException ex)
        {
            throw SocketErrno.ToException(ex, "receive vfio-user message body");
        }
        catch (ObjectDisposedException ex)
        {
            throw new VfioException(Errno.ENOTCONN, "receive vfio-user message body", "the connection is closed", ex);
        }
    }

    /// <inheritdoc/>
    public async ValueTask SendWithPipeAsync(ReadOnlyMemory<byte> message, KernelPipe pipe, int count, CancellationToken cancellationToken = default)
    {
        await _sendLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        byte[]? bounce = null;
        try
        {
            await SendAllAsync(message, cancellationToken).ConfigureAwait(false);
            int moved = 0;
            while (moved < count)
            {
                long n = SpliceNow(pipe.ReadEnd, _socket.SafeHandle, count - moved);
                if (n > 0)
                {
                    moved += (int)n;
                    pipe.Count -= (int)n;
                    continue;
                }
                if (n == -(int)Errno.EINTR)
                    continue;
                if (n == 0)
                    throw new VfioException(Errno.EIO, "send vfio-user message", $"the kernel pipe ran dry after {moved} of {count} bytes");
                if (n != -(int)Errno.EAGAIN)
                    throw ErrnoException((Errno)(int)-n, "splice vfio-user message");
                // The socket is full. The runtime offers no wait for room but a send, so a few bytes leave through
                // memory, and once the socket took them the rest goes by reference again.
                bounce ??= System.Buffers.ArrayPool<byte>.Shared.Rent(VfioUserTuning.SpliceBounceBytes);
                int piece = Math.Min(VfioUserTuning.SpliceBounceBytes, count - moved);
                pipe.ReadExactly(bounce.AsSpan(0, piece));
                await SendAllAsync(bounce.AsMemory(0, piece), cancellationToken).ConfigureAwait(false);
                moved += piece;
            }
        }
        finally
        {
            _sendLock.Release();
            if (bounce is not null)
                System.Buffers.ArrayPool<byte>.Shared.Return(bounce);
        }
    }

    // One non-blocking splice between two descriptors kept alive for the call. Returns bytes moved, or −errno.
    private static unsafe long SpliceNow(SafeHandle from, SafeHandle to, int count)
    {
        bool fromRef = false;
        bool toRef = false;
        try
        {
            from.DangerousAddRef(ref fromRef);
            to.DangerousAddRef(ref toRef);
            nint n = Splice((int)from.DangerousGetHandle(), null, (int)to.DangerousGetHandle(), null, (nuint)count, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
            return n >= 0 ? n : -Marshal.GetLastPInvokeError();
        }
        catch (ObjectDisposedException ex)
        {
            throw new VfioException(Errno.ENOTCONN, "splice vfio-user message", "the connection is closed", ex);
        }
        finally
        {
            if (toRef)
                to.DangerousRelease();
            if (fromRef)
                from.DangerousRelease();
        }
    }

    // Returns bytes read, or −errno. Adds received fds to the list; MSG_CTRUNC is a protocol error.
    private unsafe long TryRecvMsg(Span<byte> destination, List<SafeFdHandle> fds)
    {
        int controlLength = ScmRights.ControlSpace(Math.Max(_maxReceiveFds, 1));
        byte* control = stackalloc byte[controlLength];
        bool socketRef = false;
        try
        {
            _socket.SafeHandle.DangerousAddRef(ref socketRef);
            fixed (byte* p = destination)
            {
                var iov = new IoVec { Base = p, Length = (nuint)destination.Length };
                var hdr = new MsgHdr { Iov = &iov, IovLen = 1, Control = control, ControlLen = (nuint)controlLength };
                nint n = RecvMsg((int)_socket.SafeHandle.DangerousGetHandle(), &hdr, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
                if (n < 0)
                    return -Marshal.GetLastPInvokeError();
                // Collect whatever fds did arrive first, so they are closed even if we then fail.
                ScmRights.Decode(new ReadOnlySpan<byte>(control, (int)Math.Min(hdr.ControlLen, (nuint)controlLength)), fds);
                if ((hdr.Flags & MSG_CTRUNC) != 0)
                    throw new VfioUserProtocolException($"the peer sent more fds than the {_maxReceiveFds} we accept per message (MSG_CTRUNC)");
                return n;
            }
        }
        finally
        {
            if (socketRef)
                _socket.SafeHandle.DangerousRelease();
        }
    }

    /// <inheritdoc/>
    public void Shutdown()
    {
        try
        {
            _socket.Shutdown(SocketShutdown.Both);
        }
        catch (SocketException)
        {
        }
        catch (ObjectDisposedException)
        {
        }
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
            return;
        _socket.Dispose();
        _sendLock.Dispose();
    }
}
