namespace Vfio.Net;

/// <summary>
/// Receiver side of multi-channel striping: segments arrive on several channels, each tagged with a global
/// sequence number, and leave in order as one byte stream. At most <see cref="CapacityBytes"/> of
/// out-of-order segments are held; a channel whose segment does not fit waits (and so stops reading its
/// socket, which pushes back on the sender through TCP). The segment the reader needs next is always
/// admitted, so the cap can never deadlock the transfer.
/// </summary>
public sealed class ReorderBuffer
{
    /// <summary>How far ahead of the reader a sequence number may be before it is a protocol error.</summary>
    public const ulong MaxWindow = 1UL << 24;

    private readonly Lock _lock = new();
    private readonly Dictionary<ulong, NetFrame> _segments = [];
    private TaskCompletionSource _changed = NewSignal();
    private ulong _next;
    private long _queuedBytes;
    private long _peakQueuedBytes;
    private NetFrame? _current;
    private int _currentOffset;
    private ulong? _total;
    private long _totalBytes = -1;
    private long _bytesRead;
    private Exception? _fault;

    /// <summary>Creates a buffer holding at most <paramref name="capacityBytes"/> of queued segments.</summary>
    public ReorderBuffer(long capacityBytes)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacityBytes, NetProtocol.MaxFramePayload);
        CapacityBytes = capacityBytes;
    }

    /// <summary>The cap on queued bytes.</summary>
    public long CapacityBytes { get; }

    /// <summary>The most bytes ever queued at once (for tests and reports).</summary>
    public long PeakQueuedBytes
    {
        get
        {
            lock (_lock)
                return _peakQueuedBytes;
        }
    }

    /// <summary>Bytes handed to the reader so far.</summary>
    public long BytesRead => Interlocked.Read(ref _bytesRead);

    /// <summary>
    /// Adds a segment, waiting while the cap is reached. Takes ownership of <paramref name="frame"/>.
    /// Throws EBADMSG for a duplicate, late or absurdly early sequence number.
    /// </summary>
    public async ValueTask AddAsync(NetFrame frame, string channel, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(frame);
        bool owned = true;
        try
        {
            while (true)
            {
                Task wait;
                lock (_lock)
                {
                    if (_fault is not null)
                        throw _fault;
                    ulong seq = frame.Sequence;
                    if (seq < _next || _segments.ContainsKey(seq))
                        throw new VfioException(Errno.EBADMSG, $"reassemble on {channel}", $"segment {seq} arrived twice");
                    if (seq - _next > MaxWindow || (_total is { } t && seq >= t))
                        throw new VfioException(Errno.EBADMSG, $"reassemble on {channel}", $"segment {seq} is out of range (next expected {_next})");
                    if (seq == _next || _queuedBytes + frame.Length <= CapacityBytes)
                    {
                        _segments.Add(seq, frame);
                        owned = false;
                        _queuedBytes += frame.Length;
                        _peakQueuedBytes = Math.Max(_peakQueuedBytes, _queuedBytes);
                        SignalLocked();
                        return;
                    }
                    wait = _changed.Task;
                }
                await wait.WaitAsync(cancellationToken).ConfigureAwait(false);
            }
        }
        finally
        {
            if (owned)
                frame.Return();
        }
    }

    /// <summary>Records the end of the stream: <paramref name="segments"/> segments carrying <paramref name="bytes"/> bytes.</summary>
    public void SetEnd(ulong segments, long bytes, string channel)
    {
        lock (_lock)
        {
            if ((_total is { } t && t != segments) || (_totalBytes >= 0 && _totalBytes != bytes))
                throw new VfioException(Errno.EBADMSG, $"reassemble on {channel}", "the channels disagree about the length of the stream");
            if (segments < _next || _segments.Keys.Any(k => k >= segments))
                throw new VfioException(Errno.EBADMSG, $"reassemble on {channel}", "the end-of-stream count is below segments already received");
            _total = segments;
            _totalBytes = bytes;
            SignalLocked();
        }
    }

    /// <summary>Fails every waiting and future call with <paramref name="fault"/>.</summary>
    public void Fault(Exception fault)
    {
        lock (_lock)
        {
            _fault ??= fault;
            foreach (var f in _segments.Values)
                f.Return();
            _segments.Clear();
            _queuedBytes = 0;
            _current?.Return();
            _current = null;
            SignalLocked();
        }
    }

    /// <summary>Reads the next in-order bytes; 0 at the end of the stream.</summary>
    public async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken)
    {
        if (buffer.Length == 0)
            return 0;
        while (true)
        {
            Task wait;
            lock (_lock)
            {
                if (_fault is not null)
                    throw _fault;
                if (_current is null && _segments.Remove(_next, out var seg))
                {
                    _current = seg;
                    _currentOffset = 0;
                }
                if (_current is { } cur)
                {
                    int n = Math.Min(buffer.Length, cur.Length - _currentOffset);
                    cur.Buffer.AsSpan(_currentOffset, n).CopyTo(buffer.Span);
                    _currentOffset += n;
                    _bytesRead += n;
                    if (_currentOffset == cur.Length)
                    {
                        _queuedBytes -= cur.Length;
                        cur.Return();
                        _current = null;
                        _next++;
                        SignalLocked();
                    }
                    return n;
                }
                if (_total is { } t && _next >= t)
                {
                    if (_totalBytes >= 0 && _bytesRead != _totalBytes)
                        throw new VfioException(Errno.EBADMSG, "reassemble", $"the stream carried {_bytesRead} bytes but the sender announced {_totalBytes}");
                    return 0;
                }
                wait = _changed.Task;
            }
            await wait.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Takes the next in-order segment for a reader that parses the segment buffers in place
    /// (<see cref="ReorderPipeReader"/>). The segment stays counted against the cap until <see cref="Release"/>.
    /// Returns false with <paramref name="ended"/> at the end of the stream, else with a task that completes on
    /// the next change.
    /// </summary>
    internal bool TryTakeNext(out NetFrame? segment, out bool ended, out Task? changed)
    {
        segment = null;
        ended = false;
        changed = null;
        lock (_lock)
        {
            if (_fault is not null)
                throw _fault;
            if (_segments.Remove(_next, out segment))
            {
                _next++;
                _bytesRead += segment.Length;
                SignalLocked();
                return true;
            }
            if (_total is { } t && _next >= t)
            {
                if (_totalBytes >= 0 && _bytesRead != _totalBytes)
                    throw new VfioException(Errno.EBADMSG, "reassemble", $"the stream carried {_bytesRead} bytes but the sender announced {_totalBytes}");
                ended = true;
                return false;
            }
            changed = _changed.Task;
            return false;
        }
    }

    /// <summary>Gives back a segment taken with <see cref="TryTakeNext"/> once its bytes were consumed.</summary>
    internal void Release(NetFrame segment)
    {
        lock (_lock)
        {
            if (_fault is null)
            {
                _queuedBytes -= segment.Length;
                SignalLocked();
            }
        }
        segment.Return();
    }

    private void SignalLocked()
    {
        var old = _changed;
        _changed = NewSignal();
        old.TrySetResult();
    }

    private static TaskCompletionSource NewSignal() => new(TaskCreationOptions.RunContinuationsAsynchronously);
}
