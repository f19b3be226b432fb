namespace Vfio.Diagnostics;

/// <summary>
/// One line of a flight record (JSON Lines, schema in docs/flight-recorder.md). Every event has
/// <see cref="TMs"/> and <see cref="Ev"/>; the other fields belong to some kinds of event and are omitted
/// when absent. Times are monotonic milliseconds since the record's <c>recorder</c> line, whose
/// <see cref="Wall"/> is the wall-clock anchor.
/// </summary>
public sealed record FlightEvent
{
    /// <summary>Milliseconds since the recorder started (monotonic clock).</summary>
    public double TMs { get; init; }

    /// <summary>The kind: recorder, begin, device, phase, arc, reset, session_open, session_close, precopy_info, round,
    /// switchover, frame, frames, fault, recovery, outcome, wire, note.</summary>
    public string Ev { get; init; } = "";

    /// <summary>source or destination.</summary>
    public string? Side { get; init; }

    /// <summary>Device index within its side.</summary>
    public int? Dev { get; init; }

    /// <summary>A name: the device's, or the frame type's.</summary>
    public string? Name { get; init; }

    /// <summary>Engine phase (setup, pre_copy, switchover, stop_copy, validate, start, cleanup, completed).</summary>
    public string? Phase { get; init; }

    /// <summary>device_state before a SET (as last known).</summary>
    public string? From { get; init; }

    /// <summary>device_state a SET asked for.</summary>
    public string? To { get; init; }

    /// <summary>Errno name of a failure (absent on success).</summary>
    public string? Errno { get; init; }

    /// <summary>Duration in milliseconds of what the event describes (a SET, a session, a run of frames).</summary>
    public double? DurMs { get; init; }

    /// <summary>Bytes.</summary>
    public long? Bytes { get; init; }

    /// <summary>A count (frames, devices).</summary>
    public long? Count { get; init; }

    /// <summary>Pre-copy round number (from 1).</summary>
    public int? Round { get; init; }

    /// <summary>Bytes a switchover would still move.</summary>
    public long? PendingBytes { get; init; }

    /// <summary>Most pending bytes the downtime limit allows at the measured bandwidth.</summary>
    public long? ThresholdBytes { get; init; }

    /// <summary>Measured pre-copy bandwidth, bytes per second.</summary>
    public double? BandwidthBps { get; init; }

    /// <summary>PRECOPY_INFO initial_bytes.</summary>
    public ulong? InitialBytes { get; init; }

    /// <summary>PRECOPY_INFO dirty_bytes (the device's dirty estimate).</summary>
    public ulong? DirtyBytes { get; init; }

    /// <summary>PRECOPY_INFO REINIT flag.</summary>
    public bool? Reinit { get; init; }

    /// <summary>Switchover-acks received.</summary>
    public int? Acks { get; init; }

    /// <summary>Downtime the convergence model predicted at the switchover (absent before bandwidth is measured).</summary>
    public double? PredictedDowntimeMs { get; init; }

    /// <summary>The measured downtime (first source leaving RUNNING to last destination RUNNING).</summary>
    public double? DowntimeMs { get; init; }

    /// <summary>The allowed downtime.</summary>
    public double? LimitMs { get; init; }

    /// <summary>The model's fixed cost (device calls, return path, hand-overs).</summary>
    public double? FixedCostMs { get; init; }

    /// <summary>The switchover was forced (pre-copy did not converge).</summary>
    public bool? Forced { get; init; }

    /// <summary>Direction of frames: out (written) or in (read).</summary>
    public string? Dir { get; init; }

    /// <summary>completed, aborted or held (outcome events); the record status otherwise.</summary>
    public string? Outcome { get; init; }

    /// <summary>Plain words.</summary>
    public string? Detail { get; init; }

    /// <summary>Wall-clock time (UTC, ISO 8601) of <see cref="TMs"/> = 0; on the recorder line only.</summary>
    public string? Wall { get; init; }

    /// <summary>Schema version; on the recorder line only.</summary>
    public int? Schema { get; init; }

    /// <summary>Host name; on the recorder line only.</summary>
    public string? Host { get; init; }

    /// <summary>Process id; on the recorder line only.</summary>
    public int? Pid { get; init; }

    /// <summary>The migration id (begin and outcome events).</summary>
    public string? MigrationId { get; init; }
}
