using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Vfio.Net;

/// <summary>Tuning of a migration session's data path.</summary>
public sealed record NetSessionOptions
{
    /// <summary>Defaults: 512 KiB segments, 16 MiB reorder cap, 4 segments queued per channel and 8 in flight in all.</summary>
    public static NetSessionOptions Default { get; } = new();

    /// <summary>
    /// The default <see cref="MaxQueuedBytes"/>: 8 to 32 segments as their pooled buffers occupy it (2 MiB for a
    /// segment carrying one 1 MiB engine frame, 1 MiB for a 512 KiB segment), room for a few channels to run ahead of
    /// a slow one, and small enough that a receiver stays within its memory target (docs/performance.md): 64 MiB let
    /// two channels fill it on every 1 GiB run, and cost as much RSS, for no measurable throughput.
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

    /// <summary>
    /// The default <see cref="MaxSendSegments"/>: as many as one channel holds at its <see cref="SendQueueDepth"/>
    /// (4 queued, 1 being sent) with room for 3 more, so one channel runs as before, and 8 channels hold no more than
    /// 2 do. A segment's pooled buffer is up to 2 MiB (an engine frame of 1 MiB rounds up), so about 16 MiB at most.
    /// </summary>
    public const int DefaultMaxSendSegments = 8;

    /// <summary>
    /// Sender: most segments queued or being sent at once over all channels (≥ 1); with <see cref="SendQueueDepth"/>
    /// per channel, whichever is reached first. It keeps the sender's memory flat in the number of channels.
    /// </summary>
    public int MaxSendSegments { get; init; } = DefaultMaxSendSegments;

    /// <summary>Where the session logs (opened, accepted, dropped connections, failures, aborts). Default: no logging.</summary>
    public ILoggerFactory LoggerFactory { get; init; } = NullLoggerFactory.Instance;
}
