namespace Vfio.Stream;

/// <summary>The fixed 20-byte header that opens each of the two streams (docs/stream-format.md).</summary>
/// <param name="Kind">Forward or return stream (the magic).</param>
/// <param name="Version">Format version; this build writes and reads <see cref="MigrationFrameCodec.Version"/>.</param>
/// <param name="DeviceCount">Number of devices (device indices are 0 … count−1).</param>
/// <param name="MaxPayload">The largest frame payload the writer will send.</param>
internal readonly record struct MigrationStreamPreamble(MigrationStreamKind Kind, ushort Version, ushort DeviceCount, uint MaxPayload);
