using System.Buffers;

namespace Vfio.User.Client;

/// <summary>
/// Where the data of one MIG_DATA_READ reply goes. The reader names its own buffer once it is ready for this
/// reply (<see cref="Provide"/>); the read loop waits for that and receives the data straight into it, so a
/// stop-copy byte is copied only by the kernel. Whatever does not fit, or arrives after the reader gave up on
/// the buffer (<see cref="Abandon"/>), lands in a pooled overflow array instead: nothing is ever lost. A reader that
/// relays the data asks for it to be held in a kernel pipe instead (<see cref="ProvideHold"/>, <see cref="Held"/>).
/// </summary>
internal sealed class MigDataTarget(int requested)
{
    private readonly TaskCompletionSource<MigDataPlacement> _destination = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>The size the request asked for (a reply claiming more is malformed).</summary>
    public int Requested => requested;

    /// <summary>True once the read loop placed the data (false: the reply came as a whole message, e.g. an error).</summary>
    public bool Placed { get; private set; }

    /// <summary>Data bytes written to the provided buffer.</summary>
    public int PlacedCount { get; private set; }

    /// <summary>Data bytes that did not go to the provided buffer (pooled; see <see cref="TakeOverflow"/>).</summary>
    public int OverflowCount { get; private set; }

    private byte[]? _overflow;

    /// <summary>The data the read loop spliced into a kernel pipe for a reader that asked for it to be held (<see cref="PlacedCount"/> bytes).</summary>
    public Transport.SplicedChunk? Held { get; private set; }

    private readonly Lock _gate = new();
    private bool _revoked;
    private TaskCompletionSource? _writing;

    internal Task<MigDataPlacement> Destination => _destination.Task;

    /// <summary>The reader's buffer for this reply's data (first call wins).</summary>
    public void Provide(Memory<byte> buffer) => _destination.TrySetResult(new MigDataPlacement(buffer, Hold: false));

    /// <summary>The reader wants this reply's data held in a kernel pipe where the transport can (first call wins).</summary>
    public void ProvideHold() => _destination.TrySetResult(new MigDataPlacement(Memory<byte>.Empty, Hold: true));

    /// <summary>The reader will not wait for this reply with a buffer: keep the data in the overflow array.</summary>
    public void Abandon() => _destination.TrySetResult(default);

    /// <summary>
    /// The reader gave up on a buffer it provided (its read was cancelled): data not yet written goes to the
    /// overflow instead. Completes once the read loop no longer writes into that buffer, so the reader may
    /// hand the memory back to whoever owns it.
    /// </summary>
    public Task RevokeAsync()
    {
        lock (_gate)
        {
            _revoked = true;
            _destination.TrySetResult(default);
            Held?.Dispose(); // nobody will take it now
            return _writing?.Task ?? Task.CompletedTask;
        }
    }

    // Read loop: the memory to receive into now (empty once revoked); EndWrite must follow.
    internal Memory<byte> BeginWrite(Memory<byte> destination)
    {
        lock (_gate)
        {
            if (_revoked || destination.IsEmpty)
                return Memory<byte>.Empty;
            _writing = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            return destination;
        }
    }

    internal void EndWrite()
    {
        TaskCompletionSource? writing;
        lock (_gate)
        {
            writing = _writing;
            _writing = null;
        }
        writing?.TrySetResult();
    }

    internal void SetPlaced(int placed, byte[]? overflow, int overflowCount, Transport.SplicedChunk? held = null)
    {
        lock (_gate)
        {
            if (_revoked)
                held?.Dispose();
            else
                Held = held;
        }
        PlacedCount = placed;
        _overflow = overflow;
        OverflowCount = overflowCount;
        Placed = true;
    }

    /// <summary>Copies the overflow into <paramref name="first"/> then <paramref name="rest"/> and returns the array to the pool.</summary>
    /// <returns>Bytes copied into <paramref name="first"/>.</returns>
    public int TakeOverflow(Span<byte> first, Span<byte> rest)
    {
        var overflow = _overflow;
        if (overflow is null)
            return 0;
        int n = Math.Min(first.Length, OverflowCount);
        overflow.AsSpan(0, n).CopyTo(first);
        overflow.AsSpan(n, OverflowCount - n).CopyTo(rest);
        _overflow = null;
        ArrayPool<byte>.Shared.Return(overflow);
        return n;
    }
}
