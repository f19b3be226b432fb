namespace Vfio.User.Transport;

/// <summary>
/// The idle kernel pipes of one vfio-user connection: a pipe is rented for each MIG_DATA_READ reply received into
/// one and comes back when its chunk is written out. Creating one costs three syscalls, so empty pipes are kept, up
/// to <see cref="MaxIdle"/>. Once the kernel refused a pipe of the size asked, none is asked for again.
/// </summary>
internal sealed class KernelPipePool(int capacity) : IDisposable
{
    /// <summary>Idle pipes kept for reuse: a pipelined read's worth and a few waiting in the engine's pipe.</summary>
    public const int MaxIdle = 8;

    private readonly Stack<KernelPipe> _idle = new();
    private readonly Lock _gate = new();
    private bool _refused;
    private bool _disposed;
    private int _open;

    /// <summary>Pipes of this pool not yet closed: idle ones and ones out with a chunk (a leak shows here).</summary>
    public int Open => Volatile.Read(ref _open);

    /// <summary>An empty pipe; null when the kernel gives none of this size.</summary>
    public KernelPipe? Rent()
    {
        lock (_gate)
        {
            if (_idle.TryPop(out var idle))
                return idle;
            if (_refused || _disposed)
                return null;
        }
        var pipe = KernelPipe.TryCreate(capacity);
        if (pipe is null)
        {
            lock (_gate)
                _refused = true;
            return null;
        }
        Interlocked.Increment(ref _open);
        return pipe;
    }

    /// <summary>Takes a pipe back: kept when it is empty and there is room, closed otherwise (its bytes dropped).</summary>
    public void Return(KernelPipe pipe)
    {
        lock (_gate)
        {
            if (pipe.Count == 0 && !_disposed && _idle.Count < MaxIdle)
            {
                _idle.Push(pipe);
                return;
            }
        }
        Close(pipe);
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        lock (_gate)
        {
            _disposed = true;
            while (_idle.TryPop(out var pipe))
                Close(pipe);
        }
    }

    private void Close(KernelPipe pipe)
    {
        pipe.Dispose();
        Interlocked.Decrement(ref _open);
    }
}
