using System.IO.Pipelines;
using Vfio.Stream;

namespace Vfio.Engine;

/// <summary>
/// An in-memory pipe whose two ends run in one process (<see cref="MigrationEngine"/>). Its ends say
/// <see cref="IAuthenticatedPipe.Authenticates"/>: the bytes never leave this process's memory, so nothing between
/// writer and reader can change them, and the data frames skip the payload CRC that checks a wire (two passes over
/// every byte in one process: one to write it, one to check it). Header CRCs, sequence numbers and every other check
/// of the stream are unchanged.
/// </summary>
internal static class ProcessLocalPipe
{
    /// <summary>Makes a pipe with <paramref name="options"/> and returns its two marked ends.</summary>
    public static (PipeWriter Writer, PipeReader Reader) Create(PipeOptions options)
    {
        var pipe = new Pipe(options);
        return (new LocalWriter(pipe.Writer), new LocalReader(pipe.Reader));
    }

    private sealed class LocalWriter(PipeWriter inner) : PipeWriter, IAuthenticatedPipe
    {
        public bool Authenticates => true;

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

    private sealed class LocalReader(PipeReader inner) : PipeReader, IAuthenticatedPipe
    {
        public bool Authenticates => true;

        public override ValueTask<ReadResult> ReadAsync(CancellationToken cancellationToken = default) => inner.ReadAsync(cancellationToken);

        public override bool TryRead(out ReadResult result) => inner.TryRead(out result);

        public override void AdvanceTo(SequencePosition consumed) => inner.AdvanceTo(consumed);

        public override void AdvanceTo(SequencePosition consumed, SequencePosition examined) => inner.AdvanceTo(consumed, examined);

        public override void CancelPendingRead() => inner.CancelPendingRead();

        public override void Complete(Exception? exception = null) => inner.Complete(exception);

        public override ValueTask CompleteAsync(Exception? exception = null) => inner.CompleteAsync(exception);
    }
}
