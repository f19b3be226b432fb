using System.Buffers;

namespace Vfio.Stream;

/// <summary>
/// One decoded frame. The payload is a slice of the reader's buffer and stays valid only until the
/// next read from the same <see cref="MigrationStreamReader"/> (or until the caller advances the buffer).
/// </summary>
internal readonly record struct MigrationFrame(MigrationFrameType Type, ushort Device, uint Sequence, ReadOnlySequence<byte> Payload)
{
    /// <summary>The device index of stream-level frames.</summary>
    public const ushort StreamLevel = 0xFFFF;

    /// <summary>True for frames that concern the whole stream rather than one device.</summary>
    public bool IsStreamLevel => Device == StreamLevel;

    /// <summary>
    /// A chunk frame (<see cref="MigrationFrameCodec.FlagPayloadChunk"/>): the payload length its header declares. Its
    /// bytes are <see cref="Chunk"/>, not <see cref="Payload"/> (which is empty). Null for every other frame.
    /// </summary>
    public int? ChunkLength { get; init; }

    /// <summary>The payload of a chunk frame, taken from the pipe by the stream reader; it too is valid until the next read.</summary>
    public Migration.DataChunk? Chunk { get; init; }

    /// <summary>True when the payload travels beside the stream as <see cref="Chunk"/>.</summary>
    public bool IsChunk => ChunkLength is not null;

    /// <summary>Payload length in bytes.</summary>
    public int Length => ChunkLength ?? (int)Payload.Length;

    /// <inheritdoc/>
    public override string ToString()
        => $"{Type} frame {Sequence} ({(IsStreamLevel ? "stream" : "device " + Device.ToString(System.Globalization.CultureInfo.InvariantCulture))}, {Length} bytes)";
}
