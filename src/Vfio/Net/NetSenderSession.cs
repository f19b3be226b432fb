using System.Buffers;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Threading.Channels;

namespace Vfio.Net;

using Stream = System.IO.Stream;

/// <summary>
/// The sending end of a migration session: N authenticated connections to one receiver. The migration
/// stream written to <see cref="MigrationStream"/> is cut into segments that are numbered and spread over
/// the channels; <see cref="ReturnStream"/> carries the receiver's return path; <see cref="WaitForStatusAsync"/>
/// yields its final status. Any fault (cut, stall, corruption, peer abort) fails every pending and later call.
/// </summary>
public sealed class NetSenderSession : NetSession
{
    private readonly NetSecurityOptions _security;
    private readonly NetSessionOptions _options;
    private readonly Channel<(ulong Seq, byte[] Buffer, int Length)>[] _queues;
    private readonly Task[] _writers;
    private readonly Task _controlReader;
    private readonly Task _watchdog;
    private readonly TaskCompletionSource<NetStatus> _status = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly ByteQueue _return = new(16L << 20);
    private readonly SemaphoreSlim _writeGate = new(1, 1);
    private readonly SemaphoreSlim _segmentSlots;
    private int _segmentsInFlight;
    private int _peakSegmentsInFlight;
    private byte[]? _segment;
    private int _fill;
    private ulong _nextSeq;
    private long _totalBytes;
    private bool _completed;
    private ulong _returnSeq;

    private NetSenderSession(NetChannel[] channels, Guid sessionId, NetSecurityOptions security, NetSessionOptions options)
        : base(channels, sessionId, "sender", options.LoggerFactory)
    {
        _security = security;
        _options = options;
        _segmentSlots = new SemaphoreSlim(options.MaxSendSegments, options.MaxSendSegments);
        _queues = new Channel<(ulong, byte[], int)>[channels.Length];
        _writers = new Task[channels.Length];
        for (int i = 0; i < channels.Length; i++)
        {
            _queues[i] = Channel.CreateBounded<(ulong, byte[], int)>(new BoundedChannelOptions(options.SendQueueDepth) { SingleReader = true, SingleWriter = true });
            int index = i;
            _writers[i] = Task.Run(() => WriterLoopAsync(index));
        }
        _controlReader = Task.Run(ControlReaderLoopAsync);
        _watchdog = Task.Run(WatchdogLoopAsync);
        MigrationStream = new DelegatingStream(null, WriteAsync, FlushAsync);
        ReturnStream = new DelegatingStream(ReadReturnAsync, null, null);
    }

    /// <summary>Where to write the migration stream (write-only). Flush sends a partly filled segment.</summary>
    public Stream MigrationStream { get; }

    /// <summary>The receiver's return path (read-only). Reading flushes <see cref="MigrationStream"/> first.</summary>
    public Stream ReturnStream { get; }

    /// <summary>True when frames are sealed (AES-256-GCM): every byte of the migration stream is authenticated.</summary>
    internal bool Sealed => Channels[0].Sealed;

    /// <summary>Migration-stream bytes accepted so far.</summary>
    public long BytesWritten => Interlocked.Read(ref _totalBytes);

    /// <summary>The most segments ever queued or being sent at once over all channels (for tests and reports).</summary>
    internal int PeakSegmentsInFlight => Volatile.Read(ref _peakSegmentsInFlight);

    /// <summary>Connects <paramref name="channels"/> connections to <paramref name="host"/>:<paramref name="port"/>, each with TLS (if set) and the handshake.</summary>
    public static async Task<NetSenderSession> ConnectAsync(string host, int port, int channels, NetSecurityOptions security, NetSessionOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(security);
        security.Validate("send");
        options ??= NetSessionOptions.Default;
        if (channels < 1 || channels > NetProtocol.MaxChannels)
            throw new VfioException(Errno.EINVAL, "send", $"--channels must be 1..{NetProtocol.MaxChannels}");
        if (options.SegmentBytes < 4096 || options.SegmentBytes > NetProtocol.MaxFramePayload)
            throw new VfioException(Errno.EINVAL, "send", "segment size must be 4 KiB..4 MiB");
        if (options.MaxSendSegments < 1 || options.SendQueueDepth < 1)
            throw new VfioException(Errno.EINVAL, "send", "MaxSendSegments and SendQueueDepth must be at least 1");
        var id = Guid.NewGuid();
        var list = new List<NetChannel>();
        try
        {
            byte[]? sessionSecret = null;
            for (int i = 0; i < channels; i++)
            {
                var (channel, secret) = await ConnectOneAsync(host, port, i, channels, id, security, sessionSecret, cancellationToken).ConfigureAwait(false);
                list.Add(channel);
                sessionSecret ??= secret;
            }
        }
        catch
        {
            foreach (var c in list)
                c.Abort();
            throw;
        }
        var session = new NetSenderSession([.. list], id, security, options);
        NetLog.Connected(session.Logger, id, host, port, channels, security);
        return session;
    }

    private static async Task<(NetChannel, byte[]?)> ConnectOneAsync(string host, int port, int index, int count, Guid id, NetSecurityOptions security, byte[]? sessionSecret, CancellationToken cancellationToken)
    {
        string name = $"channel {index} to {host}:{port}";
        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp);
        NetChannel.Tune(socket);
        Stream? stream = null;
        try
        {
            using (var connectCts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken))
            {
                connectCts.CancelAfter(security.ConnectTimeout);
                try
                {
                    await socket.ConnectAsync(host, port, connectCts.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
                {
                    throw new VfioException(Errno.ETIMEDOUT, $"connect {name}", $"no answer within {security.ConnectTimeout.TotalSeconds:0.#} s (--connect-timeout)");
                }
                catch (SocketException e)
                {
                    throw NetErrors.FromIO(e, $"connect {name}");
                }
            }
            stream = new NetworkStream(socket, ownsSocket: false);
            using var hsCts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            hsCts.CancelAfter(security.HandshakeTimeout);
            NetHandshakeResult result;
            try
            {
                byte[] binding = [];
                if (security.UseTls)
                {
                    var ssl = await NetTls.AuthenticateClientAsync(stream, host, security, hsCts.Token).ConfigureAwait(false);
                    stream = ssl;
                    binding = NetTls.Binding(ssl.RemoteCertificate);
                }
                byte[] nonce = RandomNumberGenerator.GetBytes(32);
                byte flags = (byte)((security.Token is null ? 0 : NetHello.FlagHasToken) | (security.SealsFrames ? NetHello.FlagSealed : 0));
                var hello = new NetHello(NetProtocol.Version, index == 0 ? (byte)0 : (byte)1, flags, (ushort)index, (ushort)count, id, nonce);
                result = await NetHandshake.RunClientAsync(stream, security, hello, binding, sessionSecret, $"{host}:{port}", hsCts.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException || (e is VfioException { Errno: Errno.ECANCELED } && hsCts.IsCancellationRequested)) 
            {
                if (cancellationToken.IsCancellationRequested)
                    throw;
                throw new VfioException(Errno.ETIMEDOUT, $"handshake on {name}", $"the receiver did not complete the handshake within {security.HandshakeTimeout.TotalSeconds:0.#} s");
            }
            return (new NetChannel(socket, stream, index, name, result.Keys), result.SessionSecret);
        }
        catch
        {
            if (stream is not null)
                await stream.DisposeAsync().ConfigureAwait(false);
            socket.Dispose();
            throw;
        }
    }

    /// <summary>Waits for the receiver's final status; throws the session's fault if it ends first.</summary>
    public async Task<NetStatus> WaitForStatusAsync(CancellationToken cancellationToken = default)
    {
        await FlushAsync(cancellationToken).ConfigureAwait(false);
        return await _status.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Flushes and announces the end of the migration stream on every channel.</summary>
    public async Task CompleteAsync(CancellationToken cancellationToken = default)
    {
        await _writeGate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            ThrowIfFaulted();
            if (_completed)
                return;
            await FlushLockedAsync(cancellationToken).ConfigureAwait(false);
            _completed = true;
            foreach (var q in _queues)
                q.Writer.TryComplete();
        }
        finally
        {
            _writeGate.Release();
        }
        await Task.WhenAll(_writers).WaitAsync(cancellationToken).ConfigureAwait(false);
        ThrowIfFaulted();
    }

    /// <summary>
    /// Tells the receiver this side saw the status, with the sender's verdict (payload: u8 0 = not verified,
    /// 1 = digests match, 2 = digests differ, then the source digest; or 3 = not comparable, then the source
    /// digest's kind), and closes cleanly.
    /// </summary>
    public async Task SendByeAsync(byte verdict = 0, byte[]? sourceDigest = null, CancellationToken cancellationToken = default)
    {
        ThrowIfFaulted();
        byte[] payload = [verdict, .. sourceDigest ?? []];
        if (payload.Length > NetDigest.MaxByeLength)
            throw new ArgumentException("digest too long", nameof(sourceDigest));
        await Channels[0].WriteFrameAsync(NetFrameType.Bye, 0, payload, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Tells the receiver the migration is abandoned (best effort, bounded), then ends the session.</summary>
    public Task AbortAsync(Errno errno, string reason)
        => MarkTellAndCloseAsync(new VfioException(Errno.ECANCELED, "send", "the migration was abandoned: " + reason), errno, reason);

    private async ValueTask WriteAsync(ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        await _writeGate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            ThrowIfFaulted();
            if (_completed)
                throw new InvalidOperationException("the migration stream is already complete");
            while (data.Length > 0)
            {
                _segment ??= ArrayPool<byte>.Shared.Rent(_options.SegmentBytes + NetProtocol.FrameHeaderSize + NetProtocol.FrameTrailerSize);
                int n = Math.Min(data.Length, _options.SegmentBytes - _fill);
                data.Span[..n].CopyTo(_segment.AsSpan(NetProtocol.FrameHeaderSize + _fill));
                _fill += n;
                data = data[n..];
                Interlocked.Add(ref _totalBytes, n);
                if (_fill == _options.SegmentBytes)
                    await EnqueueLockedAsync(cancellationToken).ConfigureAwait(false);
            }
        }
        finally
        {
            _writeGate.Release();
        }
    }

    private async Task FlushAsync(CancellationToken cancellationToken)
    {
        await _writeGate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            ThrowIfFaulted();
            await FlushLockedAsync(cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _writeGate.Release();
        }
    }

    private async Task FlushLockedAsync(CancellationToken cancellationToken)
    {
        if (_fill > 0)
            await EnqueueLockedAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// The migration stream as a pipe whose buffers are the segment frames themselves (no copy into segments).
    /// For the engine (<see cref="NetMigration"/>); flushing it sends what was written.
    /// </summary>
    internal System.IO.Pipelines.PipeWriter CreateMigrationWriter() => new SegmentPipeWriter(this, _options.SegmentBytes);

    /// <summary>
    /// Sends filled segment buffers (payload at <see cref="NetProtocol.FrameHeaderSize"/>) in order, after any
    /// partial segment of <see cref="MigrationStream"/>. Takes ownership of each buffer it dequeues.
    /// </summary>
    internal async Task EnqueueSegmentsAsync(Queue<(byte[] Buffer, int Length)> segments, CancellationToken cancellationToken)
    {
        await _writeGate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            ThrowIfFaulted();
            if (_completed)
                throw new InvalidOperationException("the migration stream is already complete");
            await FlushLockedAsync(cancellationToken).ConfigureAwait(false);
            while (segments.TryDequeue(out var segment))
            {
                Interlocked.Add(ref _totalBytes, segment.Length);
                await EnqueueSegmentLockedAsync(segment.Buffer, segment.Length, cancellationToken).ConfigureAwait(false);
            }
        }
        finally
        {
            _writeGate.Release();
        }
    }

    private async Task EnqueueLockedAsync(CancellationToken cancellationToken)
    {
        byte[] segment = _segment!;
        int length = _fill;
        _segment = null;
        _fill = 0;
        await EnqueueSegmentLockedAsync(segment, length, cancellationToken).ConfigureAwait(false);
    }

    private async Task EnqueueSegmentLockedAsync(byte[] segment, int length, CancellationToken cancellationToken)
    {
        ulong seq = _nextSeq++;
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, Cts.Token);
        bool slot = false;
        try
        {
            await _segmentSlots.WaitAsync(linked.Token).ConfigureAwait(false);
            slot = true;
            // Only this method raises the count, and it runs under the write gate: the peak has one writer.
            int now = Interlocked.Increment(ref _segmentsInFlight);
            if (now > _peakSegmentsInFlight)
                Volatile.Write(ref _peakSegmentsInFlight, now);
            await _queues[(int)(seq % (ulong)_queues.Length)].Writer.WriteAsync((seq, segment, length), linked.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is OperationCanceledException or ChannelClosedException)
        {
            if (slot)
                ReleaseSegmentSlot();
            ArrayPool<byte>.Shared.Return(segment);
            ThrowIfFaulted();
            throw;
        }
    }

    // A segment was sent (or dropped after a fault): its slot may take the next one.
    private void ReleaseSegmentSlot()
    {
        Interlocked.Decrement(ref _segmentsInFlight);
        _segmentSlots.Release();
    }

    private async Task WriterLoopAsync(int index)
    {
        var channel = Channels[index];
        try
        {
            await foreach (var (seq, buffer, length) in _queues[index].Reader.ReadAllAsync(Cts.Token).ConfigureAwait(false))
            {
                try
                {
                    await channel.WriteInPlaceAsync(buffer, NetFrameType.Data, seq, length, _options.PayloadCrc, Cts.Token).ConfigureAwait(false);
                }
                finally
                {
                    ArrayPool<byte>.Shared.Return(buffer);
                    ReleaseSegmentSlot();
                }
            }
            byte[] total = new byte[8];
            System.Buffers.Binary.BinaryPrimitives.WriteInt64BigEndian(total, Interlocked.Read(ref _totalBytes));
            await channel.WriteFrameAsync(NetFrameType.DataEnd, _nextSeq, total, Cts.Token).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            await FaultAfterPeerReasonAsync(e, $"send on {channel.Name}", waitForControl: true).ConfigureAwait(false);
        }
        finally
        {
            while (_queues[index].Reader.TryRead(out var left))
            {
                ArrayPool<byte>.Shared.Return(left.Buffer);
                ReleaseSegmentSlot();
            }
        }
    }

    private async Task ControlReaderLoopAsync()
    {
        var control = Channels[0];
        try
        {
            while (true)
            {
                control.NoteReading();
                var frame = await control.ReadFrameAsync(Cts.Token).ConfigureAwait(false);
                if (frame is null)
                {
                    if (!_status.Task.IsCompleted)
                        Fault(new VfioException(Errno.ECONNRESET, $"receive on {control.Name}", "the receiver closed the connection before reporting a final status"));
                    _return.Complete();
                    return;
                }
                try
                {
                    switch (frame.Type)
                    {
                        case NetFrameType.Return:
                            if (frame.Sequence != _returnSeq++)
                                throw new VfioException(Errno.EBADMSG, $"receive on {control.Name}", "return-path frames arrived out of order");
                            if (frame.Length == 0)
                                throw new VfioException(Errno.EBADMSG, $"receive on {control.Name}", "an empty return-path frame (a protocol error: it would read as the end of the return path)");
                            _return.Enqueue(frame.Payload.Span);
                            break;
                        case NetFrameType.Status:
                            control.ExpectingFrames = false;
                            _return.Complete();
                            _status.TrySetResult(NetStatus.Decode(frame.Payload.Span));
                            break;
                        case NetFrameType.Abort:
                            var (errno, reason) = NetStatus.DecodeAbort(frame.Payload.Span);
                            Fault(new VfioException(errno, "receiver", "the receiver abandoned the migration: " + reason));
                            return;
                        case NetFrameType.Keepalive:
                            break;
                        default:
                            throw new VfioException(Errno.EPROTO, $"receive on {control.Name}", $"unexpected {frame.Type} frame from the receiver");
                    }
                }
                finally
                {
                    frame.Return();
                }
            }
        }
        catch (VfioException e) when (e.Errno is Errno.EBADMSG or Errno.EPROTO && FaultReason is null)
        {
            await MarkTellAndCloseAsync(e, e.Errno, e.Message).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            Fault(e is OperationCanceledException && FaultReason is not null ? FaultReason : NetErrors.FromIO(e, $"receive on {control.Name}"));
        }
    }

    private async Task WatchdogLoopAsync()
    {
        var control = Channels[0];
        var idle = _security.IdleTimeout;
        var tick = TimeSpan.FromMilliseconds(Math.Clamp(idle.TotalMilliseconds / 6, 20, 1000));
        try
        {
            while (!Cts.IsCancellationRequested)
            {
                await Task.Delay(tick, Cts.Token).ConfigureAwait(false);
                if (control.ExpectingFrames && control.SinceLastReceived > idle)
                {
                    Fault(new VfioException(Errno.ETIMEDOUT, $"receive on {control.Name}", $"nothing heard from the receiver for {idle.TotalSeconds:0.#} s (--idle-timeout): the peer stalled or the link is down"));
                    return;
                }
                foreach (var ch in Channels)
                {
                    if (ch.SinceLastSent > idle / 3)
                        _ = SendKeepaliveAsync(ch);
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    private async Task SendKeepaliveAsync(NetChannel control)
    {
        try
        {
            await control.WriteFrameAsync(NetFrameType.Keepalive, 0, ReadOnlyMemory<byte>.Empty, Cts.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is VfioException or OperationCanceledException)
        {
            // A failing link shows up in the reader or the watchdog.
        }
    }

    private async ValueTask<int> ReadReturnAsync(Memory<byte> buffer, CancellationToken cancellationToken)
    {
        if (!IsFaulted)
            await FlushAsync(cancellationToken).ConfigureAwait(false);
        return await _return.ReadAsync(buffer, cancellationToken).ConfigureAwait(false);
    }

    private protected override Task ControlReader => _controlReader;

    private protected override void OnFault(Exception e)
    {
        _status.TrySetException(e);
        _ = _status.Task.Exception;
        _return.Fault(e);
    }

    /// <inheritdoc/>
    public override async ValueTask DisposeAsync()
    {
        if (MarkDisposed(out var disposed))
        {
            _status.TrySetException(disposed);
            _return.Fault(disposed);
            await Cts.CancelAsync().ConfigureAwait(false);
        }
        foreach (var c in Channels)
            await c.DisposeAsync().ConfigureAwait(false);
        try
        {
            await Task.WhenAll([.. _writers, _controlReader, _watchdog]).ConfigureAwait(false);
        }
        catch (Exception e) when (e is OperationCanceledException or VfioException or IOException)
        {
        }
        foreach (var q in _queues)
        {
            while (q.Reader.TryRead(out var left))
                ArrayPool<byte>.Shared.Return(left.Buffer);
        }
        _segment = null;
        // Cts is not disposed: late fire-and-forget keepalives may still read its token.
    }
}
