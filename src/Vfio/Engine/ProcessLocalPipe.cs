using System.IO.Pipelines;
using Vfio.Migration;
using Vfio.Stream;

namespace Vfio.Engine;

/// <summary>
/// An in-memory pipe whose two ends run in one process (<see cref="MigrationEngine"/>). Its ends say
/// <see cref="IAuthenticatedPipe.Authenticates"/>: the bytes never leave this process's memory, so nothing between
/// writer and reader can change them, and the data frames skip the payload CRC that checks a wire (two passes over
/// every byte in one process: one to write it, one to check it). Header CRCs, sequence numbers and every other check
/// of the stream are unchanged.
/// <para>
/// The pipe also carries data frames' payloads as <see cref="DataChunk"/>s (<see cref="IChunkPipeWriter"/>): a chunk a
/// source device's transport holds in the kernel reaches the destination device's transport without being copied
/// into this process. At most <c>maxChunks</c> wait in the pipe; the writer waits for room, as it waits for the
/// pipe's byte threshold.
/// </para>
/// </summary>
internal static class ProcessLocalPipe
{
    /// <summary>Makes a pipe with <paramref name="options"/> and returns its two marked ends; up to <paramref name="maxChunks"/> chunks wait in it.</summary>
    public static (PipeWriter Writer, PipeReader Reader) Create(PipeOptions options, int maxChunks = 4)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxChunks, 1);
        var pipe = new Pipe(options);
        var chunks = new ChunkQueue(maxChunks);
        return (new LocalWriter(pipe.Writer, chunks), new LocalReader(pipe.Reader, chunks));
    }

    // The chunks of the chunk frames in the pipe, in frame order. Once the reader completed, chunks are disposed
    // on arrival (the writer learns of it from the pipe itself, EPIPE on its flush).
    private sealed class ChunkQueue(int capacity)
    {
        private readonly Queue<DataChunk> _queue = new();
        private readonly Lock _gate = new();
        private TaskCompletionSource? _room; // completed when a chunk leaves a full queue
        private bool _readerDone;

        public async ValueTask AddAsync(DataChunk chunk, CancellationToken cancellationToken)
        {
            while (true)
            {
                Task room;
                lock (_gate)
                {
                    if (_readerDone)
                        break;
                    if (_queue.Count < capacity)
                    {
                        _queue.Enqueue(chunk);
                        return;
                    }
                    _room ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                    room = _room.Task;
                }
                try
                {
                    await room.WaitAsync(cancellationToken).ConfigureAwait(false);
                }
                catch
                {
                    chunk.Dispose();
                    throw;
                }
            }
            chunk.Dispose();
            throw new VfioException(Errno.EPIPE, "write migration stream", "the peer stopped reading the stream");
        }

        public DataChunk? Take()
        {
            lock (_gate)
            {
                if (!_queue.TryDequeue(out var chunk))
                    return null;
                OpenRoom();
                return chunk;
            }
        }

        public void ReaderDone()
        {
            lock (_gate)
            {
                _readerDone = true;
                while (_queue.TryDequeue(out var chunk))
                    chunk.Dispose();
                OpenRoom();
            }
        }

        private void OpenRoom()
        {
            _room?.TrySetResult();
            _room = null;
        }
    }

    private sealed class LocalWriter(PipeWriter inner, ChunkQueue chunks) : PipeWriter, IAuthenticatedPipe, IChunkPipeWriter
    {
        public bool Authenticates => true;

        public ValueTask AddChunkAsync(DataChunk chunk, CancellationToken cancellationToken) => chunks.AddAsync(chunk, cancellationToken);

        public override void Advance(int bytes) => inner.Advance(bytes);

        public override Memory<byte> GetMemory(int sizeHint = 0) => inner.GetMemory(sizeHint);

        public override Span<byte> GetSpan(int sizeHint = 0) => inner.GetSpan(sizeHint);

        public override ValueTask<FlushResult> FlushAsync(CancellationToken cancellationToken = default) => inner.FlushAsync(cancellationToken);

        public override ValueTask<FlushResult> WriteAsync(ReadOnlyMemory<byte> source, CancellationToken cancellationToken = default)
            => inner.WriteAsync(source, cancellationToken);

        public override void CancelPendingFlush() => inner.CancelPendingFlush();

        public override void Complete(Exception? exception = null) => inner.Complete(exception);

        public override ValueTask CompleteAsync(Exception? exception = null) => inner.CompleteAsync(exception);
    }

    private sealed class LocalReader(PipeReader inner, ChunkQueue chunks) : PipeReader, IAuthenticatedPipe, IChunkPipeReader
    {
        public bool Authenticates => true;

        public DataChunk? TakeChunk() => chunks.Take();

        public override ValueTask<ReadResult> ReadAsync(CancellationToken cancellationToken = default) => inner.ReadAsync(cancellationToken);

        public override bool TryRead(out ReadResult result) => inner.TryRead(out result);

        public override void AdvanceTo(SequencePosition consumed) => inner.AdvanceTo(consumed);

        public override void AdvanceTo(SequencePosition consumed, SequencePosition examined) => inner.AdvanceTo(consumed, examined);

        public override void CancelPendingRead() => inner.CancelPendingRead();

        public override void Complete(Exception? exception = null)
        {
            chunks.ReaderDone();
            inner.Complete(exception);
        }

        public override ValueTask CompleteAsync(Exception? exception = null)
        {
            chunks.ReaderDone();
            return inner.CompleteAsync(exception);
        }
    }
}
