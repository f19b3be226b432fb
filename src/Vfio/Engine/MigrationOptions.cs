using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Vfio.Engine;

/// <summary>Settings of a live migration. Immutable; start from <see cref="Default"/> and use <c>with</c>.</summary>
public sealed record MigrationOptions
{
    /// <summary>The defaults: 1 MiB buffer, 300 ms downtime limit, 64 rounds, 2 minutes of pre-copy, fail on non-convergence.</summary>
    public static MigrationOptions Default { get; } = new();

    /// <summary>
    /// Bytes read from a device per read call, and so the largest frame payload (VFIO_MIG_DEFAULT_DATA_BUFFER_SIZE analogue). Default 1 MiB.
    /// </summary>
    public int BufferBytes { get; init; } = 1 << 20;

    /// <summary>The allowed downtime; pre-copy switches over once bandwidth × this covers the pending bytes. Default 300 ms.</summary>
    public TimeSpan DowntimeLimit { get; init; } = TimeSpan.FromMilliseconds(300);

    /// <summary>Pre-copy rounds before the non-convergence policy applies. Default 64.</summary>
    public int MaxRounds { get; init; } = 64;

    /// <summary>Pre-copy time before the non-convergence policy applies. Default 2 minutes.</summary>
    public TimeSpan MaxPreCopyTime { get; init; } = TimeSpan.FromMinutes(2);

    /// <summary>What happens when pre-copy does not converge. Default <see cref="NonConvergencePolicy.Fail"/>.</summary>
    public NonConvergencePolicy NonConvergence { get; init; } = NonConvergencePolicy.Fail;

    /// <summary>Use PRE_COPY when every source device supports it. Default true.</summary>
    public bool UsePreCopy { get; init; } = true;

    /// <summary>
    /// Do not switch over before every destination acknowledged its device's initial bytes (the
    /// switchover-ack analogue). Default true. Ignored by a forced switchover.
    /// </summary>
    public bool RequireSwitchoverAck { get; init; } = true;

    /// <summary>
    /// Pre-flight compatibility (docs/compatibility.md): the source sends each device's profile after its Setup
    /// frame and the destination compares it with its own device's before any source device leaves RUNNING,
    /// refusing with every reason. Default true. Off on either side: no check (the destination warns).
    /// </summary>
    public bool CheckCompatibility { get; init; } = true;

    /// <summary>How long the source pauses after a pre-copy round that found no data. Default 10 ms.</summary>
    public TimeSpan IdleRoundDelay { get; init; } = TimeSpan.FromMilliseconds(10);

    /// <summary>How often progress is reported while data moves. Default 100 ms.</summary>
    public TimeSpan ProgressInterval { get; init; } = TimeSpan.FromMilliseconds(100);

    /// <summary>How long a failing side waits to deliver its Abort/Error frame to the peer. Default 2 s.</summary>
    public TimeSpan FailureNoticeTimeout { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>
    /// The bound of each wait in the commit exchange (docs/commit-protocol.md): the source for the load results
    /// after End (then it restarts), the loaded destination for the Commit (then it decides aborted), the source for
    /// the answer to its Commit (then it holds). Stalls before End are the transport's to detect. Default 30 s.
    /// </summary>
    public TimeSpan CommitTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>The migration id the source announces; <see cref="Guid.Empty"/> (default) = a new random one per run.</summary>
    public Guid MigrationId { get; init; }

    /// <summary>
    /// Where each side keeps its record and the destination its decision. Default null: a fresh
    /// <see cref="InMemoryMigrationStore"/> (not durable); the CLI passes a file store.
    /// </summary>
    public IMigrationDecisionStore? DecisionStore { get; init; }

    /// <summary>Called at each <see cref="MigrationCheckpoint"/> (fault tests stop, cut or kill there). Default none.</summary>
    public Func<MigrationCheckpoint, CancellationToken, ValueTask>? Checkpoint { get; init; }

    /// <summary>
    /// Where each half records its timeline (arcs, data sessions, rounds, the switchover decision, frames, faults,
    /// recovery; docs/flight-recorder.md). Both halves may share one. Default null: no flight record. Metrics and
    /// activities (<see cref="Diagnostics.MigrationTelemetry"/>) do not depend on it.
    /// </summary>
    public Diagnostics.FlightRecorder? FlightRecorder { get; init; }

    /// <summary>Where the engine logs (phases, rounds, switchover, failures). Default: no logging.</summary>
    public ILoggerFactory LoggerFactory { get; init; } = NullLoggerFactory.Instance;

    /// <summary>Checks the values.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A value is out of range.</exception>
    public void Validate()
    {
        if (BufferBytes < 4096 || BufferBytes > (int)Stream.MigrationFrameCodec.HardMaxPayload)
            throw new ArgumentOutOfRangeException(nameof(BufferBytes), BufferBytes, $"the buffer size must be 4 KiB to {Stream.MigrationFrameCodec.HardMaxPayload >> 20} MiB");
        if (DowntimeLimit < TimeSpan.Zero)
            throw new ArgumentOutOfRangeException(nameof(DowntimeLimit), DowntimeLimit, "the downtime limit cannot be negative");
        if (MaxRounds < 1)
            throw new ArgumentOutOfRangeException(nameof(MaxRounds), MaxRounds, "at least one pre-copy round is needed");
        if (MaxPreCopyTime <= TimeSpan.Zero)
            throw new ArgumentOutOfRangeException(nameof(MaxPreCopyTime), MaxPreCopyTime, "the pre-copy time limit must be positive");
        if (IdleRoundDelay < TimeSpan.Zero || ProgressInterval < TimeSpan.Zero || FailureNoticeTimeout < TimeSpan.Zero || CommitTimeout <= TimeSpan.Zero)
            throw new ArgumentOutOfRangeException(nameof(IdleRoundDelay), "delays cannot be negative");
    }
}
