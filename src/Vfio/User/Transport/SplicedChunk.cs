using Vfio.Migration;

namespace Vfio.User.Transport;

/// <summary>
/// Migration data held in a <see cref="KernelPipe"/>: the data of one MIG_DATA_READ reply, spliced out of the
/// source connection's socket. A vfio-user connection that splices writes it behind a MIG_DATA_WRITE header by
/// splicing it out again; anything else copies it out. The pipe goes back to its pool once emptied.
/// </summary>
internal sealed class SplicedChunk(KernelPipe pipe, int length, KernelPipePool pool) : DataChunk
{
    private int _disposed;

    /// <inheritdoc/>
    public override int Length => length;

    /// <summary>The pipe holding what is left of the bytes.</summary>
    internal KernelPipe Pipe => pipe;

    /// <inheritdoc/>
    public override ValueTask CopyToAsync(Memory<byte> destination, CancellationToken cancellationToken = default)
    {
        if (destination.Length != length || pipe.Count != length)
            throw new InvalidOperationException($"a chunk of {length} bytes ({pipe.Count} left) copied into {destination.Length}");
        pipe.ReadExactly(destination.Span);
        return ValueTask.CompletedTask;
    }

    /// <inheritdoc/>
    public override void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
            pool.Return(pipe);
    }
}
