namespace Vfio.Stream;

/// <summary>
/// Implemented by a pipe end whose transport authenticates every byte it carries, in order (the network session's
/// AES-256-GCM sealed frames), or whose bytes never leave the process (the engine's in-process pipe). Over such a
/// pipe the migration stream's data frames skip their own payload CRC (flag
/// <see cref="MigrationFrameCodec.FlagPayloadUnchecked"/>): the transport's tag, or the process's own memory, already
/// rules out any change, and the CRC would be a second checksum over every byte on each side. Anything else keeps it.
/// </summary>
internal interface IAuthenticatedPipe
{
    /// <summary>True when every byte through this pipe end is authenticated by its transport.</summary>
    bool Authenticates { get; }
}
