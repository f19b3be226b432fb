namespace Vfio.Net;

/// <summary>
/// Receiver side of multi-channel striping: segments arrive on several channels, each tagged with a global
/// sequence number, and leave in order as one byte stream. What is held is bounded twice: at most
/// <see cref="CapacitySegments"/> segments, and at most <see cref="CapacityBytes"/> of memory, where each segment
/// counts what it really occupies (its pooled buffer, not just its payload, plus <see cref="SegmentOverheadBytes"/>
/// of bookkeeping) so that many small or empty segments cannot hold more than the cap. Empty data segments are a
/// protocol error. A receiving channel makes room for a segment after its header and before its payload
/// (<see cref="ReserveAsync"/>), so the caps bound the segments still being read too; a channel whose segment does
/// not fit waits (and so stops reading its socket, which pushes back on the sender through TCP). The segment the
/// reader needs next is always admitted, so the caps can never deadlock the transfer.
/// </summary>
internal sealed class ReorderBuffer
{
    /// <summary>How far ahead of the reader a sequence number may be before it is a protocol error.</summary>
    public const ulong MaxWindow = 1UL << 24;

    /// <summary>What one held segment costs beyond its buffer (frame object, table entry), counted against the byte cap.</summary>
    public const int SegmentOverheadBytes = 256;

    private readonly Lock _lock = new();
    private readonly Dictionary<ulong, NetFrame> _segments = [];
    private readonly Dictionary<ulong, long> _reserved = [];
    private TaskCompletionSource _changed = NewSignal();
    private ulong _next;
    private long _queuedBytes;
    private int _queuedSegments;
    private long _peakQueuedBytes;
    private NetFrame? _current;
    private int _currentOffset;
    private ulong? _total;
    private long _totalBytes = -1;
    private long _bytesRead;
    private Exception? _fault;

    /// <summary>Creates a buffer holding at most <paramref name="capacityBytes"/> and <paramref name="capacitySegments"/> of queued segments.</summary>
    public ReorderBuffer(long capacityBytes, int capacitySegments = 4096)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacityBytes, NetProtocol.MaxFramePayload);
        ArgumentOutOfRangeException.ThrowIfLessThan(capacitySegments, 1);
        CapacityBytes = capacityBytes;
        CapacitySegments = capacitySegments;
    }

    /// <summary>The cap on the memory of queued segments (buffers plus bookkeeping).</summary>
    public long CapacityBytes { get; }

    /// <summary>The cap on the number of queued segments.</summary>
    public int CapacitySegments { get; }

    /// <summary>Segments held now (for tests and reports).</summary>
    public int QueuedSegments
    {
        get
        {
            lock (_lock)
                return _queuedSegments;
        }
    }

    /// <summary>The most memory ever held at once by queued segments (for tests and reports).</summary>
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
    /// Adds a segment, waiting while a cap is reached. Takes ownership of <paramref name="frame"/>.
    /// Throws EBADMSG for an empty segment and for a duplicate, late or absurdly early sequence number.
    /// </summary>
    public async ValueTask AddAsync(NetFrame frame, string channel, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(frame);
        try
        {
            await ReserveAsync(frame.Sequence, frame.Length, frame.Buffer.Length, channel, cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            frame.Return();
            throw;
        }
        AddReserved(frame, channel);
    }

    /// <summary>
    /// Makes room for a segment whose header has been read but whose payload has not (<paramref name="payloadBytes"/>,
    /// held in a pooled buffer of <paramref name="bufferBytes"/> requested), waiting while a cap is reached; the segment
    /// the reader needs next is always admitted. The room counts against the caps until the segment leaves, so what
    /// the channels hold is bounded before they read, not after. Complete it with <see cref="AddReserved"/>. Throws
    /// EBADMSG as <see cref="AddAsync"/> does.
    /// </summary>
    public async ValueTask ReserveAsync(ulong sequence, int payloadBytes, int bufferBytes, string channel, CancellationToken cancellationToken)
    {
        long charge = ChargeFor(bufferBytes);
        while (true)
        {
            Task wait;
            lock (_lock)
            {
                if (_fault is not null)
                    throw _fault;
                CheckLocked(sequence, payloadBytes, channel);
                if (_reserved.ContainsKey(sequence))
                    throw new VfioException(Errno.EBADMSG, $"reassemble on {channel}", $"segment {sequence} arrived twice");
                if (sequence == _next || (_queuedBytes + charge <= CapacityBytes && _queuedSegments < CapacitySegments))
                {
                    _reserved.Add(sequence, charge);
                    _queuedBytes += charge;
                    _queuedSegments++;
                    _peakQueuedBytes = Math.Max(_peakQueuedBytes, _queuedBytes);
                    return;
                }
                wait = _changed.Task;
            }
            await wait.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>Adds a segment whose room <see cref="ReserveAsync"/> made. Takes ownership of <paramref name="frame"/>.</summary>
    public void AddReserved(NetFrame frame, string channel)
    {
        ArgumentNullException.ThrowIfNull(frame);
        lock (_lock)
        {
            if (_fault is not null || !_reserved.Remove(frame.Sequence, out long reserved))
            {
                frame.Return();
                throw _fault ?? new VfioException(Errno.EBADMSG, $"reassemble on {channel}", $"segment {frame.Sequence} was not announced by its header");
            }
            _queuedBytes += Charge(frame) - reserved; // 0 unless the pool handed out a larger buffer than asked
            _peakQueuedBytes = Math.Max(_peakQueuedBytes, _queuedBytes);
            _segments.Add(frame.Sequence, frame);
            SignalLocked();
        }
    }

    /// <summary>Records the end of the stream: <paramref name="segments"/> segments carrying <paramref name="bytes"/> bytes.</summary>
    public void SetEnd(ulong segments, long bytes, string channel)
    {
        lock (_lock)
        {
            if ((_total is { } t && t != segments) || (_totalBytes >= 0 && _totalBytes != bytes))
                throw new VfioException(Errno.EBADMSG, $"reassemble on {channel}", "the channels disagree about the length of the stream");
            if (segments < _next || _segments.Keys.Any(k => k >= segments) || _reserved.Keys.Any(k => k >= segments))
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
            _reserved.Clear();
            _queuedBytes = 0;
            _queuedSegments = 0;
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
                        _queuedBytes -= Charge(cur);
                        _queuedSegments--;
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
                _queuedBytes -= Charge(segment);
                _queuedSegments--;
                SignalLocked();
            }
        }
        segment.Return();
    }

    // What a held segment occupies: its whole pooled buffer (rented sizes are rounded up) and its bookkeeping.
    private static long Charge(NetFrame frame) => frame.Buffer.Length + SegmentOverheadBytes;

    // The same for a buffer not rented yet: the shared pool rounds a request up to a power of two (at least 16).
    private static long ChargeFor(int bufferBytes) => (long)System.Numerics.BitOperations.RoundUpToPowerOf2((uint)Math.Max(bufferBytes, 16)) + SegmentOverheadBytes;

    // The checks on a segment's number and size, for AddAsync and ReserveAsync alike.
    private void CheckLocked(ulong seq, int length, string channel)
    {
        if (length == 0)
            throw new VfioException(Errno.EBADMSG, $"reassemble on {channel}", $"segment {seq} is empty (a protocol error)");
        if (seq < _next || _segments.ContainsKey(seq))
            throw new VfioException(Errno.EBADMSG, $"reassemble on {channel}", $"segment {seq} arrived twice");
        if (seq - _next > MaxWindow || (_total is { } t && seq >= t))
            throw new VfioException(Errno.EBADMSG, $"reassemble on {channel}", $"segment {seq} is out of range (next expected {_next})");
    }

    private void SignalLocked()
    {
        var old = _changed;
        _changed = NewSignal();
        old.TrySetResult();
    }

    private static TaskCompletionSource NewSignal() => new(TaskCreationOptions.RunContinuationsAsynchronously);
}
