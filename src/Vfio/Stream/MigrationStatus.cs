namespace Vfio.Stream;

/// <summary>
/// The payload of <see cref="MigrationFrameType.Abort"/>, <see cref="MigrationFrameType.Error"/> and
/// <see cref="MigrationFrameType.LoadResult"/>: an errno (0 = success), the phase it happened in, and words.
/// </summary>
/// <param name="Errno">The Linux errno; <see cref="Errno.None"/> for success.</param>
/// <param name="Phase">A small phase code (the engine's <c>MigrationPhase</c> value).</param>
/// <param name="Message">Plain words, at most <see cref="MigrationFrameCodec.MaxMessageBytes"/> UTF-8 bytes on the wire.</param>
internal readonly record struct MigrationStatus(Errno Errno, byte Phase, string Message)
{
    /// <summary>True when <see cref="Errno"/> is <see cref="Errno.None"/>.</summary>
    public bool IsSuccess => Errno == Errno.None;
}
