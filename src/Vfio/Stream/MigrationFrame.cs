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

    /// <summary>Payload length in bytes.</summary>
    public int Length => (int)Payload.Length;

    /// <inheritdoc/>
    public override string ToString()
        => $"{Type} frame {Sequence} ({(IsStreamLevel ? "stream" : "device " + Device.ToString(System.Globalization.CultureInfo.InvariantCulture))}, {Length} bytes)";
}
