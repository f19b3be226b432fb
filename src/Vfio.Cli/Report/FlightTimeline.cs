using System.Globalization;
using Vfio.Diagnostics;

namespace Vfio.Cli.Report;

/// <summary>One event on the merged timeline: its time in ms from the timeline's start, and which record it came from.</summary>
internal sealed record TimelineEvent(double T, FlightEvent E, int Record);

/// <summary>A span on a lane: [Start, End) in timeline ms, what it is (a phase or a device_state), and a tooltip.</summary>
internal sealed record TimelineSpan(double Start, double End, string Kind, string Title);

/// <summary>A lane: one side's phases, or one device of one side with its device_state over time.</summary>
internal sealed record TimelineLane(string Side, int? Device, string Label, IReadOnlyList<TimelineSpan> Spans);

/// <summary>
/// One or two flight records merged on one clock (docs/flight-recorder.md, "Clocks"): the wall-clock anchors
/// first, then the smallest shift of the second record that makes every frame both records saw arrive no earlier
/// than it left. Derives the lanes, the downtime window and the summary figures the report prints and draws.
/// </summary>
internal sealed class FlightTimeline
{
    private static readonly string[] Sides = ["source", "destination"];

    private FlightTimeline(IReadOnlyList<TimelineEvent> events, IReadOnlyList<string> files, IReadOnlyList<FlightEvent> headers, double correction)
    {
        Events = events;
        Files = files;
        Headers = headers;
        ClockCorrectionMs = correction;
        End = events.Count == 0 ? 0 : events.Where(e => e.E.Ev != "wire").Select(EndOf).DefaultIfEmpty(0).Max();
        MigrationId = events.Select(e => e.E.MigrationId).FirstOrDefault(id => id is not null);
        Lanes = BuildLanes();
        (DowntimeStart, DowntimeEnd) = FindDowntime();
    }

    public IReadOnlyList<TimelineEvent> Events { get; }

    public IReadOnlyList<string> Files { get; }

    /// <summary>Each record's <c>recorder</c> line, in <see cref="Files"/> order.</summary>
    public IReadOnlyList<FlightEvent> Headers { get; }

    /// <summary>How far the second record was shifted beyond its wall-clock anchor to respect causality (ms).</summary>
    public double ClockCorrectionMs { get; }

    public double End { get; }

    public string? MigrationId { get; }

    public IReadOnlyList<TimelineLane> Lanes { get; }

    /// <summary>The downtime window: the source's switchover until the last destination device RUNNING (or the sources RUNNING again).</summary>
    public double? DowntimeStart { get; }

    public double? DowntimeEnd { get; }

    public IEnumerable<TimelineEvent> Of(string ev, string? side = null) => Events.Where(e => e.E.Ev == ev && (side is null || e.E.Side == side));

    public IEnumerable<string> SidesPresent => Sides.Where(s => Events.Any(e => e.E.Side == s));

    /// <summary>Loads and merges <paramref name="paths"/> (one or two flight records).</summary>
    public static FlightTimeline Load(IReadOnlyList<string> paths)
    {
        var records = paths.Select(FlightRecorder.Load).ToList();
        var anchors = records.Select(r => ParseWall(r.Header.Wall)).ToList();
        var origin = anchors.Min();
        var offsets = anchors.Select(a => (a - origin).TotalMilliseconds).ToList();
        double correction = 0;
        if (records.Count == 2)
        {
            correction = Causality(records[0].Events, offsets[0], records[1].Events, offsets[1]);
            offsets[1] += correction;
        }
        var merged = new List<TimelineEvent>();
        for (int r = 0; r < records.Count; r++)
            merged.AddRange(records[r].Events.Select(e => new TimelineEvent(e.TMs + offsets[r], e, r)));
        double start = merged.Count == 0 ? 0 : merged.Min(e => e.T);
        var events = merged.Select(e => e with { T = e.T - start }).OrderBy(e => e.T).ToList();
        return new FlightTimeline(events, paths, [.. records.Select(r => r.Header)], correction);
    }

    private static DateTimeOffset ParseWall(string? wall)
        => DateTimeOffset.TryParse(wall, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var t)
            ? t
            : throw new VfioException(Errno.EBADMSG, "read flight record", $"the recorder line's wall time '{wall}' is not an ISO 8601 time");

    // Frames one record wrote and the other read (matched by type, device and order): a frame arrives no earlier
    // than it left. Returns the smallest shift of record b (beyond its anchor) that satisfies every pair.
    private static double Causality(IReadOnlyList<FlightEvent> a, double offsetA, IReadOnlyList<FlightEvent> b, double offsetB)
    {
        double lower = double.NegativeInfinity, upper = double.PositiveInfinity;
        foreach (var (sent, received) in Pairs(a, b))
            lower = Math.Max(lower, sent.TMs + offsetA - (received.TMs + offsetB));
        foreach (var (sent, received) in Pairs(b, a))
            upper = Math.Min(upper, received.TMs + offsetA - (sent.TMs + offsetB));
        if (lower <= 0 && upper >= 0)
            return 0;
        if (lower > upper)
            return double.IsInfinity(lower) || double.IsInfinity(upper) ? 0 : (lower + upper) / 2;
        return lower > 0 ? lower : upper;
    }

    private static IEnumerable<(FlightEvent Sent, FlightEvent Received)> Pairs(IReadOnlyList<FlightEvent> from, IReadOnlyList<FlightEvent> to)
    {
        var received = to.Where(e => e is { Ev: "frame", Dir: "in" }).GroupBy(e => (e.Name, e.Dev)).ToDictionary(g => g.Key, g => g.ToList());
        foreach (var group in from.Where(e => e is { Ev: "frame", Dir: "out" }).GroupBy(e => (e.Name, e.Dev)))
        {
            if (!received.TryGetValue(group.Key, out var arrivals))
                continue;
            foreach (var pair in group.Zip(arrivals))
            {
                if (pair.First.Side != pair.Second.Side)
                    yield return pair;
            }
        }
    }

    private List<TimelineLane> BuildLanes()
    {
        var lanes = new List<TimelineLane>();
        foreach (var side in SidesPresent)
        {
            var sideEvents = Events.Where(e => e.E.Side == side).ToList();
            // Wire counts are written when the host-to-host session closes, after the engine's run.
            double sideEnd = sideEvents.Where(e => e.E.Ev != "wire").Select(EndOf).DefaultIfEmpty(0).Max();
            var phases = sideEvents.Where(e => e.E.Ev == "phase").ToList();
            var phaseSpans = new List<TimelineSpan>();
            for (int i = 0; i < phases.Count; i++)
            {
                double end = i + 1 < phases.Count ? phases[i + 1].T : sideEnd;
                string phase = phases[i].E.Phase ?? "?";
                phaseSpans.Add(new TimelineSpan(phases[i].T, Math.Max(end, phases[i].T), phase, $"{side} {phase}: {Ms(end - phases[i].T)}"));
            }
            lanes.Add(new TimelineLane(side, null, side + " phases", phaseSpans));
            foreach (var device in sideEvents.Where(e => e.E.Ev == "device").Select(e => e.E).DistinctBy(e => e.Dev))
                lanes.Add(new TimelineLane(side, device.Dev, $"{side} {device.Dev}: {device.Name}", StateSpans(sideEvents, device.Dev, sideEnd)));
        }
        return lanes;
    }

    // device_state over time from the SETs (a failed SET leaves the state unknown) and resets (RUNNING).
    private static List<TimelineSpan> StateSpans(List<TimelineEvent> sideEvents, int? device, double sideEnd)
    {
        var spans = new List<TimelineSpan>();
        string? state = null;
        double since = sideEvents.Count > 0 ? sideEvents[0].T : 0;
        foreach (var e in sideEvents.Where(e => e.E.Dev == device && e.E.Ev is "arc" or "reset"))
        {
            double at = e.T + (e.E.DurMs ?? 0);
            state ??= e.E.From;
            if (state is not null && at > since)
                spans.Add(new TimelineSpan(since, at, state, $"{state}: {Ms(at - since)}"));
            state = e.E.Errno is not null ? "UNKNOWN" : e.E.Ev == "reset" ? "RUNNING" : e.E.To;
            since = at;
        }
        if (state is not null && sideEnd > since)
            spans.Add(new TimelineSpan(since, sideEnd, state, $"{state}: {Ms(sideEnd - since)}"));
        return spans;
    }

    private (double?, double?) FindDowntime()
    {
        var start = Of("phase", "source").FirstOrDefault(e => e.E.Phase == "switchover")
            ?? Of("frame", "destination").FirstOrDefault(e => e.E is { Dir: "in", Name: "switchover" });
        if (start is null)
            return (null, null);
        var running = Of("arc", "destination").Where(e => e.E is { To: "RUNNING", Errno: null } && e.T >= start.T).ToList();
        if (running.Count > 0 && Of("outcome", "destination").Any(e => e.E.Outcome == "completed"))
            return (start.T, running.Max(EndOf));
        var complete = Of("frame", "source").FirstOrDefault(e => e.E is { Dir: "in", Name: "complete" });
        if (complete is not null)
            return (start.T, complete.T);
        // Failed after the switchover: the sources stopped until the rollback ran them again.
        var resumed = Of("arc", "source").Where(e => e.E is { To: "RUNNING", Errno: null } && e.T >= start.T).ToList();
        if (resumed.Count > 0)
            return (start.T, resumed.Max(EndOf));
        var last = Events.Where(e => e.T >= start.T).Select(EndOf).DefaultIfEmpty(start.T).Max();
        return (start.T, last);
    }

    /// <summary>When what <paramref name="e"/> describes ended: SETs, resets and frame runs start at <c>t_ms</c> and last
    /// <c>dur_ms</c>; every other event (a closed session's duration looks back) is an instant.</summary>
    public static double EndOf(TimelineEvent e) => e.E.Ev is "arc" or "reset" or "frames" ? e.T + (e.E.DurMs ?? 0) : e.T;

    public static string Ms(double ms) => ms.ToString(Math.Abs(ms) >= 100 ? "0" : Math.Abs(ms) >= 10 ? "0.0" : "0.0##", CultureInfo.InvariantCulture) + " ms";
}
