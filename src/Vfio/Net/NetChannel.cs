using System.Diagnostics;
using System.Net.Sockets;

namespace Vfio.Net;

using Stream = System.IO.Stream;

/// <summary>
/// One established, authenticated connection of a migration session: frame writes are serialised, and with session
/// keys every frame is sealed on the way out and opened on the way in (<see cref="NetFrameCipher"/>).
/// </summary>
internal sealed class NetChannel : IAsyncDisposable
{
    private readonly SemaphoreSlim _writeLock = new(1, 1);
    private long _lastReceived = Stopwatch.GetTimestamp();
    private bool _waitingForRoom;
    private long _lastSent = Stopwatch.GetTimestamp();
    private int _disposed;

    private readonly NetFrameCipher? _seal;
    private readonly NetFrameCipher? _open;

    internal NetChannel(Socket socket, Stream stream, int index, string name, NetChannelKeys? keys)
    {
        Socket = socket;
        Stream = stream;
        Index = index;
        Name = name;
        if (keys is not null)
        {
            _seal = new NetFrameCipher(keys.Send);
            _open = new NetFrameCipher(keys.Receive);
        }
    }

    /// <summary>Frames and bytes this channel moved, by direction and type.</summary>
    internal NetWireTally Tally { get; } = new();

    /// <summary>True when frames are sealed (every mode but <c>--insecure</c>).</summary>
    public bool Sealed => _seal is not null;

    /// <summary>Kernel send and receive buffer size of every migration socket.</summary>
    internal const int SocketBufferBytes = 4 << 20;

    /// <summary>Sets the options every migration socket uses (no Nagle delay, large kernel buffers).</summary>
    internal static void Tune(Socket socket)
    {
        socket.NoDelay = true;
        socket.SendBufferSize = SocketBufferBytes;
        socket.ReceiveBufferSize = SocketBufferBytes;
    }

    /// <summary>The TCP socket.</summary>
    public Socket Socket { get; }

    /// <summary>The byte stream (a NetworkStream, or an SslStream over it).</summary>
    public Stream Stream { get; }

    /// <summary>0 for the control channel, 1.. for data channels.</summary>
    public int Index { get; }

    /// <summary>For messages, e.g. <c>channel 2 (10.213.0.1:7000)</c>.</summary>
    public string Name { get; }

    /// <summary>True while the idle watchdog should expect frames on this channel.</summary>
    public bool ExpectingFrames { get; set; } = true;

    /// <summary>
    /// True while this channel's reader waits for room on this side (the receiver's reorder buffer is full): the
    /// silence is our own backpressure, not a stalled peer, so the idle watchdog does not count it.
    /// </summary>
    public bool WaitingForRoom
    {
        get => Volatile.Read(ref _waitingForRoom);
        set => Volatile.Write(ref _waitingForRoom, value);
    }

    /// <summary>Time since the last frame arrived.</summary>
    public TimeSpan SinceLastReceived => Stopwatch.GetElapsedTime(Interlocked.Read(ref _lastReceived));

    /// <summary>Time since the last frame was sent.</summary>
    public TimeSpan SinceLastSent => Stopwatch.GetElapsedTime(Interlocked.Read(ref _lastSent));

    /// <summary>Restarts the stall clock: called when a read begins, so time spent not reading never counts as a stall.</summary>
    public void NoteReading() => Interlocked.Exchange(ref _lastReceived, Stopwatch.GetTimestamp());

    /// <summary>Writes one frame; frames from concurrent writers never interleave.</summary>
    public async ValueTask WriteFrameAsync(NetFrameType type, ulong sequence, ReadOnlyMemory<byte> payload, CancellationToken cancellationToken)
    {
        await _writeLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            await NetFrame.WriteAsync(Stream, type, sequence, payload, _seal, cancellationToken).ConfigureAwait(false);
            Interlocked.Exchange(ref _lastSent, Stopwatch.GetTimestamp());
            Tally.Count(true, type, payload.Length);
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException or SocketException)
        {
            throw NetErrors.FromIO(e, $"send on {Name}");
        }
        finally
        {
            _writeLock.Release();
        }
    }

    /// <summary>
    /// Completes and writes a frame whose payload sits at <see cref="NetProtocol.FrameHeaderSize"/> of
    /// <paramref name="buffer"/> (see <see cref="NetFrame.EncodeInPlace"/>). Sealing happens under the write lock, so
    /// frame counters follow the order on the wire.
    /// </summary>
    public async ValueTask WriteInPlaceAsync(byte[] buffer, NetFrameType type, ulong sequence, int length, bool payloadCrc, CancellationToken cancellationToken)
    {
        await _writeLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            int frameLength = NetFrame.EncodeInPlace(buffer, type, sequence, length, _seal, payloadCrc);
            await Stream.WriteAsync(buffer.AsMemory(0, frameLength), cancellationToken).ConfigureAwait(false);
            Interlocked.Exchange(ref _lastSent, Stopwatch.GetTimestamp());
            Tally.Count(true, type, length);
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException or SocketException)
        {
            throw NetErrors.FromIO(e, $"send on {Name}");
        }
        finally
        {
            _writeLock.Release();
        }
    }

    /// <summary>Reads one frame (null at a clean end of stream).</summary>
    public ValueTask<NetFrame?> ReadFrameAsync(CancellationToken cancellationToken) => ReadFrameAsync(admit: null, cancellationToken);

    /// <summary>Reads one frame (null at a clean end of stream), awaiting <paramref name="admit"/> between its header and its payload.</summary>
    public async ValueTask<NetFrame?> ReadFrameAsync(Func<NetFrameHeader, CancellationToken, ValueTask>? admit, CancellationToken cancellationToken)
    {
        try
        {
            var frame = await NetFrame.ReadAsync(Stream, Name, _open, admit, cancellationToken).ConfigureAwait(false);
            Interlocked.Exchange(ref _lastReceived, Stopwatch.GetTimestamp());
            if (frame is not null)
                Tally.Count(false, frame.Type, frame.Length);
            return frame;
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException or SocketException && e is not VfioException)
        {
            throw NetErrors.FromIO(e, $"receive on {Name}");
        }
    }

    /// <summary>Closes the connection at once (unblocks pending reads and writes).</summary>
    public void Abort()
    {
        try
        {
            Socket.LingerState = new LingerOption(true, 0);
        }
        catch (SocketException)
        {
        }
        catch (ObjectDisposedException)
        {
        }
        Socket.Dispose();
    }

    /// <inheritdoc/>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
            return;
        try
        {
            Socket.Shutdown(SocketShutdown.Send);
        }
        catch (SocketException)
        {
        }
        catch (ObjectDisposedException)
        {
        }
        try
        {
            await Stream.DisposeAsync().ConfigureAwait(false);
        }
        catch (IOException)
        {
        }
        Socket.Dispose();
        _seal?.Dispose();
        _open?.Dispose();
        // _writeLock is not disposed: a late keepalive may still wait on it, and it holds no kernel handle.
    }
}
