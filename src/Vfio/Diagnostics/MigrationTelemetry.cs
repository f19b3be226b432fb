using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace Vfio.Diagnostics;

/// <summary>
/// The library's metrics and traces (docs/observability.md), named in the OpenTelemetry semantic-convention
/// style: one <see cref="Meter"/> and one <see cref="ActivitySource"/>, both called <see cref="Name"/>. Nothing
/// is measured unless a listener (an OpenTelemetry <c>MeterProvider</c>/<c>TracerProvider</c>, <c>dotnet-counters</c>,
/// a <see cref="MeterListener"/>) subscribes; the library depends on System.Diagnostics only.
/// </summary>
public static class MigrationTelemetry
{
    /// <summary>The meter's and the activity source's name: <c>Vfio.Migration</c>.</summary>
    public const string Name = "Vfio.Migration";

    /// <summary>Tag: <c>source</c> or <c>destination</c>.</summary>
    public const string SideTag = "vfio.migration.side";

    /// <summary>Tag: the engine phase (<c>pre_copy</c>, <c>stop_copy</c>, …).</summary>
    public const string PhaseTag = "vfio.migration.phase";

    /// <summary>Tag: <c>completed</c>, <c>aborted</c> or <c>held</c>.</summary>
    public const string OutcomeTag = "vfio.migration.outcome";

    /// <summary>Tag: the device_state a SET asked for (<c>STOP_COPY</c>, …).</summary>
    public const string TargetStateTag = "vfio.device.state";

    /// <summary>Tag (OpenTelemetry's <c>error.type</c>): the errno name of a failure.</summary>
    public const string ErrorTypeTag = "error.type";

    /// <summary>Tag (OpenTelemetry's <c>network.io.direction</c>): <c>transmit</c> or <c>receive</c>.</summary>
    public const string DirectionTag = "network.io.direction";

    /// <summary>Tag: the host-to-host frame type (<c>data</c>, <c>return</c>, …).</summary>
    public const string FrameTypeTag = "vfio.net.frame.type";

    internal static readonly ActivitySource Activities = new(Name, typeof(MigrationTelemetry).Assembly.GetName().Version?.ToString());

    internal static readonly Meter Meter = new(Name, typeof(MigrationTelemetry).Assembly.GetName().Version?.ToString());

    /// <summary><c>vfio.migration.bytes</c> (By): device bytes moved, by side and phase (pre_copy, stop_copy).</summary>
    internal static readonly Counter<long> Bytes = Meter.CreateCounter<long>("vfio.migration.bytes", "By", "Device migration data moved, by side and phase");

    /// <summary><c>vfio.migration.rounds</c>: pre-copy rounds run.</summary>
    internal static readonly Counter<long> Rounds = Meter.CreateCounter<long>("vfio.migration.rounds", "{round}", "Pre-copy rounds run by the source");

    /// <summary><c>vfio.migration.downtime</c> (s): first source device leaving RUNNING to last destination device RUNNING.</summary>
    internal static readonly Histogram<double> Downtime = Meter.CreateHistogram("vfio.migration.downtime", "s", "Downtime of completed migrations",
        advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] });

    /// <summary><c>vfio.migration.duration</c> (s): a side's whole run, by outcome.</summary>
    internal static readonly Histogram<double> Duration = Meter.CreateHistogram("vfio.migration.duration", "s", "Duration of one side of a migration, by outcome",
        advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300] });

    /// <summary><c>vfio.migration.active</c>: sides running now.</summary>
    internal static readonly UpDownCounter<long> Active = Meter.CreateUpDownCounter<long>("vfio.migration.active", "{migration}", "Migration sides running in this process");

    /// <summary><c>vfio.migration.failures</c>: failed sides, by errno (<c>error.type</c>), side and phase.</summary>
    internal static readonly Counter<long> Failures = Meter.CreateCounter<long>("vfio.migration.failures", "{failure}", "Failed migration sides, by errno and phase");

    /// <summary><c>vfio.device.set_state.duration</c> (s): latency of SET device_state, by target state and result.</summary>
    internal static readonly Histogram<double> SetStateDuration = Meter.CreateHistogram("vfio.device.set_state.duration", "s", "Latency of SET device_state (one arc or a path of arcs)",
        advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1] });

    /// <summary><c>vfio.net.frames</c>: host-to-host frames, by direction and type.</summary>
    internal static readonly Counter<long> NetFrames = Meter.CreateCounter<long>("vfio.net.frames", "{frame}", "Host-to-host migration frames, by direction and type");

    /// <summary><c>vfio.net.bytes</c> (By): host-to-host frame payload bytes, by direction and type.</summary>
    internal static readonly Counter<long> NetBytes = Meter.CreateCounter<long>("vfio.net.bytes", "By", "Host-to-host migration frame payload, by direction and type");
}
