using Vfio.Migration;

namespace Vfio.Stream;

/// <summary>The reader end of an <see cref="IChunkPipeWriter"/>'s pipe.</summary>
internal interface IChunkPipeReader
{
    /// <summary>The chunk of the chunk frame just read; null when none is queued (the stream is then malformed).</summary>
    DataChunk? TakeChunk();
}
