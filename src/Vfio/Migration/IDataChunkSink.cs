namespace Vfio.Migration;

/// <summary>A resuming stream that can take a <see cref="DataChunk"/> as it is.</summary>
internal interface IDataChunkSink
{
    /// <summary>
    /// Writes <paramref name="chunk"/> like <see cref="IMigrationDataStream.WriteAsync"/>; false, with the chunk
    /// untouched, when this stream cannot take this kind of chunk (the caller copies it out and writes the bytes).
    /// </summary>
    ValueTask<bool> TryWriteChunkAsync(DataChunk chunk, CancellationToken cancellationToken = default);
}
