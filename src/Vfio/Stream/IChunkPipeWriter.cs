using Vfio.Migration;

namespace Vfio.Stream;

/// <summary>
/// The writer end of a pipe that carries a data frame's payload beside its bytes, as a <see cref="DataChunk"/>
/// (the engine's in-process pipe): the frame in the pipe is its header and a zero trailer
/// (<see cref="MigrationFrameCodec.FlagPayloadChunk"/>), and the chunk waits in the pipe's queue of chunks, in
/// frame order. Only an end that never leaves the process can offer this.
/// </summary>
internal interface IChunkPipeWriter
{
    /// <summary>Queues the chunk of the next chunk frame; waits while the queue is full (the reader's backpressure).</summary>
    /// <exception cref="VfioException">EPIPE when the reader went away (the chunk is then disposed).</exception>
    ValueTask AddChunkAsync(DataChunk chunk, CancellationToken cancellationToken);
}
