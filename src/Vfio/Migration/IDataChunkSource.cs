namespace Vfio.Migration;

/// <summary>A saving stream that can hand its next bytes over as a <see cref="DataChunk"/>.</summary>
internal interface IDataChunkSource
{
    /// <summary>
    /// Reads the next bytes as a chunk of at most <paramref name="maxBytes"/> bytes. Null when this read cannot be
    /// a chunk (the caller reads with <see cref="IMigrationDataStream.ReadAsync"/> instead, which returns the same
    /// bytes next); <see cref="DataChunk.Empty"/> when <see cref="IMigrationDataStream.ReadAsync"/> would have returned 0.
    /// Errors are the ones <see cref="IMigrationDataStream.ReadAsync"/> throws.
    /// </summary>
    ValueTask<DataChunk?> ReadChunkAsync(int maxBytes, CancellationToken cancellationToken = default);
}
