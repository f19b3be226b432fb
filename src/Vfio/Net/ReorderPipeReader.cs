using System.Buffers;
using System.IO.Pipelines;

namespace Vfio.Net;

/// <summary>
/// A <see cref="PipeReader"/> over the in-order bytes of a <see cref="ReorderBuffer"/> that hands out the received
/// segment buffers themselves: the engine parses its frames where the socket read put them, with no copy into a
/// pipe buffer. Segments are given back to the reorder buffer (and to the pool) once consumed, so what this reader
/// holds counts against the buffer's cap; it takes a new segment only when it needs more bytes.
/// </summary>
internal sealed class ReorderPipeReader(ReorderBuffer source, bool authenticates) : PipeReader, Vfio.Stream.IAuthenticatedPipe
{
    /// <summary>True when the segments came through sealed channels: every byte was authenticated (AES-256-GCM) in order.</summary>
    public bool Authenticates => authenticates;

    private readonly Lock _lock = new();
    private Segment? _head;
    private Segment? _tail;
    private int _headOffset;
    private long _appended;
    private bool _examinedAll = true;
    private bool _ended;
    private bool _completed;
    private TaskCompletionSource? _cancel;
    private bool _cancelRequested;

    public override async ValueTask<ReadResult> ReadAsync(CancellationToken cancellationToken = default)
    {
        while (true)
        {
            if (TryReadCore(out var result, out var changed))
                return result;
            var cancel = CancelSignal();
            var done = await Task.WhenAny(changed!, cancel).WaitAsync(cancellationToken).ConfigureAwait(false);
            if (done == cancel)
                return ConsumeCancel();
        }
    }

    public override bool TryRead(out ReadResult result) => TryReadCore(out result, out _);

    public override void AdvanceTo(SequencePosition consumed) => AdvanceTo(consumed, consumed);

    public override void AdvanceTo(SequencePosition consumed, SequencePosition examined)
    {
        ObjectDisposedException.ThrowIf(_completed, this);
        if (consumed.GetObject() is Segment at)
        {
            while (_head is not null && _head != at)
                ReleaseHead();
            if (_head is not null)
            {
                _headOffset = consumed.GetInteger();
                if (_headOffset == _head.Memory.Length)
                    ReleaseHead();
            }
        }
        _examinedAll = _head is null || (examined.GetObject() == _tail && examined.GetInteger() == _tail!.Memory.Length);
    }

    public override void CancelPendingRead()
    {
        lock (_lock)
        {
            _cancelRequested = true;
            _cancel?.TrySetResult();
        }
    }

    public override void Complete(Exception? exception = null)
    {
        if (_completed)
            return;
        _completed = true;
        while (_head is not null)
            ReleaseHead();
    }

    private bool TryReadCore(out ReadResult result, out Task? changed)
    {
        ObjectDisposedException.ThrowIf(_completed, this);
        changed = null;
        if (_cancelRequested)
        {
            result = ConsumeCancel();
            return true;
        }
        bool took = false;
        while (!_ended)
        {
            if (source.TryTakeNext(out var frame, out _ended, out changed))
            {
                Append(frame!);
                took = true;
            }
            else
            {
                break;
            }
        }
        if (took || _ended || !_examinedAll)
        {
            _examinedAll = false;
            result = new ReadResult(Buffer(), isCanceled: false, isCompleted: _ended);
            return true;
        }
        result = default;
        return false;
    }

    private ReadResult ConsumeCancel()
    {
        lock (_lock)
        {
            _cancelRequested = false;
            _cancel = null;
        }
        return new ReadResult(Buffer(), isCanceled: true, isCompleted: false);
    }

    private Task CancelSignal()
    {
        lock (_lock)
        {
            _cancel ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            if (_cancelRequested)
                _cancel.TrySetResult();
            return _cancel.Task;
        }
    }

    private ReadOnlySequence<byte> Buffer()
        => _head is null ? ReadOnlySequence<byte>.Empty : new ReadOnlySequence<byte>(_head, _headOffset, _tail!, _tail!.Memory.Length);

    private void Append(NetFrame frame)
    {
        if (frame.Length == 0)
        {
            source.Release(frame);
            return;
        }
        var segment = new Segment(frame, _appended);
        _appended += frame.Length;
        if (_tail is null)
        {
            _head = segment;
            _headOffset = 0;
        }
        else
        {
            _tail.SetNext(segment);
        }
        _tail = segment;
    }

    private void ReleaseHead()
    {
        var head = _head!;
        _head = head.NextSegment;
        _headOffset = 0;
        if (_head is null)
            _tail = null;
        source.Release(head.Frame);
    }

    private sealed class Segment : ReadOnlySequenceSegment<byte>
    {
        public Segment(NetFrame frame, long runningIndex)
        {
            Frame = frame;
            Memory = frame.Payload;
            RunningIndex = runningIndex;
        }

        public NetFrame Frame { get; }

        public Segment? NextSegment => (Segment?)Next;

        public void SetNext(Segment next) => Next = next;
    }
}
