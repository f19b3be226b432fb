using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Vfio.Net;

/// <summary>Tuning of a migration session's data path.</summary>
public sealed record NetSessionOptions
{
    /// <summary>Defaults: 512 KiB segments, 16 MiB reorder cap, 4 segments queued per channel.</summary>
    public static NetSessionOptions Default { get; } = new();

    /// <summary>
    /// The default <see cref="MaxQueuedBytes"/>: 32 segments of 512 KiB, room for every channel of a few to run
    /// ahead of a slow one, and small enough that a receiver stays within its memory target (docs/performance.md):
    /// 64 MiB let two channels fill it on every 1 GiB run, and cost as much RSS, for no measurable throughput.
    /// </summary>
    public const long DefaultMaxQueuedBytes = 16L << 20;

    /// <summary>
    /// Bytes per data segment (one frame). 4 KiB..4 MiB. Through the engine's pipe a segment ends at a flush or
    /// at this size, and a single engine frame larger than this becomes one segment of its own size.
    /// </summary>
    public int SegmentBytes { get; init; } = 512 << 10;

    /// <summary>Receiver: most memory out-of-order segments may hold at once, counted as their buffers occupy it (≥ 4 MiB).</summary>
    public long MaxQueuedBytes { get; init; } = DefaultMaxQueuedBytes;

    /// <summary>Receiver: most out-of-order segments held at once, whatever their size (≥ 1).</summary>
    public int MaxQueuedSegments { get; init; } = 4096;

    /// <summary>
    /// Sender: checksum Data payloads too (CRC32C trailer). Off by default: the engine's migration stream carries a
    /// CRC32C per frame, so a second one over the same bytes only costs time. Frame headers are always checked.
    /// Turn it on for payloads that do not check themselves.
    /// </summary>
    public bool PayloadCrc { get; init; }

    /// <summary>Sender: segments waiting per channel before the writer blocks.</summary>
    public int SendQueueDepth { get; init; } = 4;

    /// <summary>Where the session logs (opened, accepted, dropped connections, failures, aborts). Default: no logging.</summary>
    public ILoggerFactory LoggerFactory { get; init; } = NullLoggerFactory.Instance;
}
