using System.Buffers;
using System.IO.Pipelines;

namespace Vfio.Net;

/// <summary>
/// A <see cref="PipeWriter"/> whose buffers are the sender's segment frames themselves: the engine writes its
/// frames at the payload offset of a segment buffer, the header and trailer are filled in around them on the
/// channel, and the same buffer goes to the socket, with no copy between the engine's pipe and the transport.
/// </summary>
/// <remarks>
/// A segment holds what was written up to a flush (the engine flushes after every frame) or up to the session's
/// segment size, whichever comes first; a single request for more room than the segment size gets a buffer of
/// that size (at most <see cref="NetProtocol.MaxFramePayload"/>), so one engine frame is never split.
/// </remarks>
internal sealed class SegmentPipeWriter(NetSenderSession session, int segmentSize) : PipeWriter, Vfio.Stream.IAuthenticatedPipe
{
    /// <summary>Sealed channels authenticate every segment (AES-256-GCM), so the engine's data frames skip their CRC.</summary>
    public bool Authenticates => session.Sealed;

    private const int Overhead = NetProtocol.FrameHeaderSize + NetProtocol.FrameTrailerSize;
    private readonly Queue<(byte[] Buffer, int Length)> _ready = new();
    private int _cancelRequested;
    private byte[]? _buffer;
    private int _capacity;
    private int _fill;
    private byte[]? _staging;
    private bool _completed;

    public override Memory<byte> GetMemory(int sizeHint = 0)
    {
        ObjectDisposedException.ThrowIf(_completed, this);
        sizeHint = Math.Max(sizeHint, 1);
        if (_buffer is not null && _capacity - _fill >= sizeHint)
            return _buffer.AsMemory(NetProtocol.FrameHeaderSize + _fill, _capacity - _fill);
        if (sizeHint > NetProtocol.MaxFramePayload)
        {
            // More than one frame can carry: stage it and copy it into segments on Advance.
            ReturnStaging();
            _staging = ArrayPool<byte>.Shared.Rent(sizeHint);
            return _staging;
        }
        Seal();
        _buffer = ArrayPool<byte>.Shared.Rent(Math.Max(segmentSize, sizeHint) + Overhead);
        _capacity = Math.Min(_buffer.Length - Overhead, NetProtocol.MaxFramePayload);
        _fill = 0;
        return _buffer.AsMemory(NetProtocol.FrameHeaderSize, _capacity);
    }

    public override Span<byte> GetSpan(int sizeHint = 0) => GetMemory(sizeHint).Span;

    public override void Advance(int bytes)
    {
        ObjectDisposedException.ThrowIf(_completed, this);
        if (_staging is { } staged)
        {
            _staging = null;
            try
            {
                ArgumentOutOfRangeException.ThrowIfGreaterThan((uint)bytes, (uint)staged.Length, nameof(bytes));
                CopyIn(staged.AsSpan(0, bytes));
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(staged);
            }
            return;
        }
        ArgumentOutOfRangeException.ThrowIfGreaterThan((uint)bytes, (uint)(_capacity - _fill), nameof(bytes));
        _fill += bytes;
        if (_fill >= segmentSize)
            Seal();
    }

    public override async ValueTask<FlushResult> FlushAsync(CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_completed, this);
        Seal();
        await session.EnqueueSegmentsAsync(_ready, cancellationToken).ConfigureAwait(false);
        return new FlushResult(isCanceled: Interlocked.Exchange(ref _cancelRequested, 0) != 0, isCompleted: false);
    }

    // A flush waiting for room in the send queue is not interrupted: it reports the cancellation when it returns.
    public override void CancelPendingFlush() => Volatile.Write(ref _cancelRequested, 1);

    public override async ValueTask CompleteAsync(Exception? exception = null)
    {
        if (_completed)
            return;
        try
        {
            if (exception is null && (_fill > 0 || _ready.Count > 0))
                await FlushAsync().ConfigureAwait(false);
        }
        finally
        {
            Release();
        }
    }

    public override void Complete(Exception? exception = null)
    {
        if (_completed)
            return;
        try
        {
            if (exception is null && (_fill > 0 || _ready.Count > 0))
                FlushAsync().AsTask().GetAwaiter().GetResult();
        }
        finally
        {
            Release();
        }
    }

    // Moves a partly or fully filled buffer to the ready queue; gives an empty one back.
    private void Seal()
    {
        if (_buffer is null)
            return;
        if (_fill > 0)
            _ready.Enqueue((_buffer, _fill));
        else
            ArrayPool<byte>.Shared.Return(_buffer);
        _buffer = null;
        _capacity = 0;
        _fill = 0;
    }

    private void CopyIn(ReadOnlySpan<byte> data)
    {
        while (data.Length > 0)
        {
            var room = GetMemory(Math.Min(data.Length, segmentSize)).Span;
            int n = Math.Min(room.Length, data.Length);
            data[..n].CopyTo(room);
            Advance(n);
            data = data[n..];
        }
    }

    private void ReturnStaging()
    {
        if (_staging is { } staged)
        {
            _staging = null;
            ArrayPool<byte>.Shared.Return(staged);
        }
    }

    private void Release()
    {
        _completed = true;
        ReturnStaging();
        if (_buffer is not null)
            ArrayPool<byte>.Shared.Return(_buffer);
        _buffer = null;
        while (_ready.TryDequeue(out var left))
            ArrayPool<byte>.Shared.Return(left.Buffer);
    }
}
