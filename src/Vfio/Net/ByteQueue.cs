namespace Vfio.Net;

/// <summary>An in-order queue of received byte chunks read as a stream (the return path), with a cap on what it holds.</summary>
internal sealed class ByteQueue(long capacityBytes)
{
    private readonly Lock _lock = new();
    private readonly Queue<byte[]> _chunks = new();
    private TaskCompletionSource _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _offset;
    private long _queued;
    private bool _completed;
    private Exception? _fault;

    public void Enqueue(ReadOnlySpan<byte> data)
    {
        lock (_lock)
        {
            if (_queued + data.Length > capacityBytes)
                throw new VfioException(Errno.EMSGSIZE, "return path", $"the peer sent more than {capacityBytes} unread bytes on the return path");
            _chunks.Enqueue(data.ToArray());
            _queued += data.Length;
            Signal();
        }
    }

    public void Complete()
    {
        lock (_lock)
        {
            _completed = true;
            Signal();
        }
    }

    public void Fault(Exception e)
    {
        lock (_lock)
        {
            _fault ??= e;
            Signal();
        }
    }

    public async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken)
    {
        while (true)
        {
            Task wait;
            lock (_lock)
            {
                if (_chunks.TryPeek(out var chunk))
                {
                    int n = Math.Min(buffer.Length, chunk.Length - _offset);
                    chunk.AsSpan(_offset, n).CopyTo(buffer.Span);
                    _offset += n;
                    _queued -= n;
                    if (_offset == chunk.Length)
                    {
                        _chunks.Dequeue();
                        _offset = 0;
                    }
                    return n;
                }
                if (_fault is not null)
                    throw _fault;
                if (_completed)
                    return 0;
                wait = _changed.Task;
            }
            await wait.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    private void Signal()
    {
        var old = _changed;
        _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);
        old.TrySetResult();
    }
}
