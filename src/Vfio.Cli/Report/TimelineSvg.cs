using System.Globalization;
using System.Text;

namespace Vfio.Cli.Report;

/// <summary>
/// Draws a <see cref="FlightTimeline"/> as one SVG picture (docs/cli/report.md): a lane of phases per side and a lane
/// per device with its device_state over time, SET ticks, data-frame runs, rounds, the switchover decision, faults
/// and recovery actions, the downtime shaded across every lane, a time axis in ms and a legend. Every mark has a
/// <c>&lt;title&gt;</c> (a tooltip in browsers) with its figures.
/// </summary>
internal static class TimelineSvg
{
    private const double Width = 1200, Left = 240, Right = 30, Top = 64, LaneHeight = 26, LaneGap = 8, SideGap = 14;

    public static readonly (string Kind, string Color)[] PhaseColors =
    [
        ("setup", "#9e9e9e"), ("pre_copy", "#64b5f6"), ("switchover", "#ffb74d"), ("stop_copy", "#ef6c00"),
        ("validate", "#ba68c8"), ("start", "#81c784"), ("cleanup", "#cfd8dc"), ("completed", "#43a047"),
    ];

    public static readonly (string Kind, string Color)[] StateColors =
    [
        ("RUNNING", "#66bb6a"), ("RUNNING_P2P", "#9ccc65"), ("PRE_COPY", "#42a5f5"), ("PRE_COPY_P2P", "#26c6da"),
        ("STOP_COPY", "#ffa726"), ("STOP", "#90a4ae"), ("RESUMING", "#ab47bc"), ("ERROR", "#e53935"), ("UNKNOWN", "#eeeeee"),
    ];

    public static string Render(FlightTimeline t, string title)
    {
        var lanes = t.Lanes;
        double span = Math.Max(t.End, 1);
        double plot = Width - Left - Right;
        double X(double ms) => Left + (Math.Clamp(ms, 0, span) / span * plot);

        // Lane positions: a gap between the two sides.
        var laneY = new double[lanes.Count];
        double y = Top;
        for (int i = 0; i < lanes.Count; i++)
        {
            if (i > 0 && lanes[i].Side != lanes[i - 1].Side)
                y += SideGap;
            laneY[i] = y;
            y += LaneHeight + LaneGap;
        }
        double lanesBottom = y - LaneGap;
        double axisY = lanesBottom + 10;
        double legendY = axisY + 40;
        double height = legendY + 92;

        var svg = new StringBuilder();
        svg.Append(CultureInfo.InvariantCulture, $"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{F(Width)}\" height=\"{F(height)}\" viewBox=\"0 0 {F(Width)} {F(height)}\" font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\" font-size=\"11\">\n");
        svg.Append(CultureInfo.InvariantCulture, $"<rect width=\"{F(Width)}\" height=\"{F(height)}\" fill=\"#ffffff\"/>\n");
        svg.Append(CultureInfo.InvariantCulture, $"<text id=\"title\" x=\"12\" y=\"22\" font-size=\"15\" font-weight=\"bold\">{Esc(title)}</text>\n");
        svg.Append(CultureInfo.InvariantCulture, $"<text id=\"subtitle\" x=\"12\" y=\"42\" fill=\"#444\">{Esc(Subtitle(t))}</text>\n");

        // Downtime first, so the lanes' marks stay readable on top of the shading.
        if (t.DowntimeStart is { } d0 && t.DowntimeEnd is { } d1)
        {
            double x0 = X(d0), w = Math.Max(X(d1) - x0, 1.5);
            svg.Append(CultureInfo.InvariantCulture, $"<g id=\"downtime\"><rect class=\"downtime\" x=\"{F(x0)}\" y=\"{F(Top - 8)}\" width=\"{F(w)}\" height=\"{F(lanesBottom - Top + 12)}\" fill=\"#e53935\" fill-opacity=\"0.16\" stroke=\"#e53935\" stroke-dasharray=\"3 2\"><title>downtime {Esc(FlightTimeline.Ms(d1 - d0))}</title></rect>");
            svg.Append(CultureInfo.InvariantCulture, $"<text x=\"{F(Math.Min(x0 + w + 4, Width - 150))}\" y=\"{F(Top - 10)}\" fill=\"#c62828\" font-weight=\"bold\">downtime {Esc(FlightTimeline.Ms(d1 - d0))}</text></g>\n");
        }

        svg.Append("<g id=\"lanes\">\n");
        for (int i = 0; i < lanes.Count; i++)
        {
            var lane = lanes[i];
            double ly = laneY[i];
            string kind = lane.Device is null ? "phases" : "device";
            svg.Append(CultureInfo.InvariantCulture, $"<g class=\"lane lane-{kind}\" data-side=\"{lane.Side}\"{(lane.Device is { } dv ? $" data-device=\"{dv}\"" : "")}>");
            svg.Append(CultureInfo.InvariantCulture, $"<text class=\"lane-label\" x=\"{F(Left - 8)}\" y=\"{F(ly + 17)}\" text-anchor=\"end\"{(lane.Device is null ? " font-weight=\"bold\"" : "")}>{Esc(Clip(lane.Label, 36))}</text>");
            svg.Append(CultureInfo.InvariantCulture, $"<rect x=\"{F(Left)}\" y=\"{F(ly)}\" width=\"{F(plot)}\" height=\"{F(LaneHeight)}\" fill=\"#fafafa\" stroke=\"#e0e0e0\"/>");
            foreach (var s in lane.Spans)
            {
                double x0 = X(s.Start), w = Math.Max(X(s.End) - x0, 0.8);
                string cls = lane.Device is null ? $"phase phase-{s.Kind}" : $"state state-{s.Kind}";
                string color = Color(lane.Device is null ? PhaseColors : StateColors, s.Kind);
                svg.Append(CultureInfo.InvariantCulture, $"<rect class=\"{cls}\" x=\"{F(x0)}\" y=\"{F(ly + 2)}\" width=\"{F(w)}\" height=\"{F(LaneHeight - 4)}\" fill=\"{color}\"><title>{Esc(s.Title)}</title></rect>");
                string label = lane.Device is null ? s.Kind.Replace('_', '-') : s.Kind;
                if (w > (label.Length * 6.2) + 6)
                    svg.Append(CultureInfo.InvariantCulture, $"<text x=\"{F(x0 + 4)}\" y=\"{F(ly + 17)}\" fill=\"#212121\" pointer-events=\"none\">{Esc(label)}</text>");
            }
            if (lane.Device is { } device)
                DeviceMarks(svg, t, lane.Side, device, ly, X);
            else
                SideMarks(svg, t, lane.Side, ly, X);
            svg.Append("</g>\n");
        }
        svg.Append("</g>\n");

        Switchover(svg, t, laneY, lanes, X);
        Axis(svg, span, axisY, X);
        Legend(svg, legendY);
        svg.Append("</svg>\n");
        return svg.ToString();
    }

    private static string Subtitle(FlightTimeline t)
    {
        var parts = new List<string>();
        foreach (var side in t.SidesPresent)
        {
            string outcome = t.Of("outcome", side).LastOrDefault()?.E.Outcome ?? (t.Of("fault", side).Any() ? "failed" : "unfinished");
            parts.Add($"{side} {outcome}");
        }
        if (t.Of("switchover").FirstOrDefault()?.E is { } sw)
            parts.Add($"predicted downtime {(sw.PredictedDowntimeMs is { } p ? FlightTimeline.Ms(p) : "n/a")}, limit {FlightTimeline.Ms(sw.LimitMs ?? 0)}");
        if (t.DowntimeStart is { } a && t.DowntimeEnd is { } b)
            parts.Add($"measured downtime {FlightTimeline.Ms(b - a)}");
        if (t.ClockCorrectionMs != 0)
            parts.Add($"clock correction {FlightTimeline.Ms(t.ClockCorrectionMs)}");
        return string.Join(" · ", parts);
    }

    // SET ticks (red when failed), data-frame runs along the bottom edge, faults of this device.
    private static void DeviceMarks(StringBuilder svg, FlightTimeline t, string side, int device, double ly, Func<double, double> x)
    {
        foreach (var run in t.Of("frames", side).Where(e => e.E.Dev == device))
        {
            double x0 = x(run.T), w = Math.Max(x(run.T + (run.E.DurMs ?? 0)) - x0, 1);
            svg.Append(CultureInfo.InvariantCulture, $"<rect class=\"frames\" x=\"{F(x0)}\" y=\"{F(ly + LaneHeight - 5)}\" width=\"{F(w)}\" height=\"3\" fill=\"#1a237e\" fill-opacity=\"0.7\"><title>{Esc($"{run.E.Count} {run.E.Name} frames {run.E.Dir}, {Units.FormatBytes(run.E.Bytes ?? 0)} in {FlightTimeline.Ms(run.E.DurMs ?? 0)}")}</title></rect>");
        }
        foreach (var arc in t.Events.Where(e => e.E.Side == side && e.E.Dev == device && e.E.Ev is "arc" or "reset"))
        {
            bool failed = arc.E.Errno is not null;
            string what = arc.E.Ev == "reset" ? "VFIO_DEVICE_RESET" : $"SET {arc.E.From ?? "?"}>{arc.E.To}";
            svg.Append(CultureInfo.InvariantCulture, $"<line class=\"arc{(failed ? " arc-failed" : "")}\" x1=\"{F(x(arc.T))}\" x2=\"{F(x(arc.T))}\" y1=\"{F(ly)}\" y2=\"{F(ly + LaneHeight)}\" stroke=\"{(failed ? "#b71c1c" : "#263238")}\" stroke-width=\"{(failed ? 2.5 : 1)}\"><title>{Esc($"{what} at {FlightTimeline.Ms(arc.T)}: {FlightTimeline.Ms(arc.E.DurMs ?? 0)}{(failed ? ", " + arc.E.Errno : "")}")}</title></line>");
        }
        foreach (var fault in t.Of("fault", side).Where(e => e.E.Dev == device))
            Fault(svg, x(fault.T), ly, fault);
    }

    // Rounds as ticks along the top edge; faults without a device; recovery actions as diamonds.
    private static void SideMarks(StringBuilder svg, FlightTimeline t, string side, double ly, Func<double, double> x)
    {
        foreach (var round in t.Of("round", side))
        {
            var r = round.E;
            svg.Append(CultureInfo.InvariantCulture, $"<rect class=\"round\" x=\"{F(x(round.T) - 1)}\" y=\"{F(ly - 3)}\" width=\"2\" height=\"7\" fill=\"#0d47a1\"><title>{Esc($"round {r.Round}: {Units.FormatBytes(r.Bytes ?? 0)} moved, {Units.FormatBytes(r.PendingBytes ?? 0)} pending (allowed {Units.FormatBytes(r.ThresholdBytes ?? 0)}), {Units.FormatBytes((long)(r.BandwidthBps ?? 0))}/s, acks {r.Acks}")}</title></rect>");
        }
        foreach (var fault in t.Of("fault", side).Where(e => e.E.Dev is null))
            Fault(svg, x(fault.T), ly, fault);
        foreach (var rec in t.Of("recovery", side))
        {
            double cx = x(rec.T), cy = ly + (LaneHeight / 2);
            svg.Append(CultureInfo.InvariantCulture, $"<path class=\"recovery\" d=\"M{F(cx)} {F(cy - 7)} L{F(cx + 6)} {F(cy)} L{F(cx)} {F(cy + 7)} L{F(cx - 6)} {F(cy)} Z\" fill=\"#1565c0\" stroke=\"#ffffff\"><title>{Esc($"recovery {rec.E.Name} at {FlightTimeline.Ms(rec.T)}: {rec.E.Detail}")}</title></path>");
        }
    }

    private static void Fault(StringBuilder svg, double cx, double ly, TimelineEvent fault)
    {
        double cy = ly + (LaneHeight / 2);
        svg.Append(CultureInfo.InvariantCulture, $"<g class=\"fault\"><title>{Esc($"fault at {FlightTimeline.Ms(fault.T)} in {fault.E.Phase}: {fault.E.Errno}: {fault.E.Detail}")}</title>");
        svg.Append(CultureInfo.InvariantCulture, $"<circle cx=\"{F(cx)}\" cy=\"{F(cy)}\" r=\"8\" fill=\"#d50000\" stroke=\"#ffffff\" stroke-width=\"1.5\"/>");
        svg.Append(CultureInfo.InvariantCulture, $"<path d=\"M{F(cx - 4)} {F(cy - 4)} L{F(cx + 4)} {F(cy + 4)} M{F(cx + 4)} {F(cy - 4)} L{F(cx - 4)} {F(cy + 4)}\" stroke=\"#ffffff\" stroke-width=\"2\"/></g>");
    }

    // The switchover decision: a dashed line over the source's lanes, its inputs in the tooltip.
    private static void Switchover(StringBuilder svg, FlightTimeline t, double[] laneY, IReadOnlyList<TimelineLane> lanes, Func<double, double> x)
    {
        if (t.Of("switchover", "source").FirstOrDefault() is not { } sw)
            return;
        var rows = Enumerable.Range(0, lanes.Count).Where(i => lanes[i].Side == "source").ToList();
        if (rows.Count == 0)
            return;
        double y0 = laneY[rows[0]] - 4, y1 = laneY[rows[^1]] + LaneHeight + 4, sx = x(sw.T);
        var e = sw.E;
        string text = $"switchover after {e.Round} round(s): pending {Units.FormatBytes(e.PendingBytes ?? 0)}, allowed {Units.FormatBytes(e.ThresholdBytes ?? 0)}, bandwidth {Units.FormatBytes((long)(e.BandwidthBps ?? 0))}/s, "
            + $"predicted downtime {(e.PredictedDowntimeMs is { } p ? FlightTimeline.Ms(p) : "n/a")} (fixed cost {FlightTimeline.Ms(e.FixedCostMs ?? 0)}), limit {FlightTimeline.Ms(e.LimitMs ?? 0)}{(e.Forced == true ? ", FORCED" : "")}";
        svg.Append(CultureInfo.InvariantCulture, $"<g id=\"switchover\"><line x1=\"{F(sx)}\" x2=\"{F(sx)}\" y1=\"{F(y0)}\" y2=\"{F(y1)}\" stroke=\"#e65100\" stroke-width=\"2\" stroke-dasharray=\"5 3\"><title>{Esc(text)}</title></line></g>\n");
    }

    private static void Axis(StringBuilder svg, double span, double axisY, Func<double, double> x)
    {
        double step = NiceStep(span / 10);
        svg.Append(CultureInfo.InvariantCulture, $"<g id=\"axis\"><line x1=\"{F(Left)}\" x2=\"{F(Width - Right)}\" y1=\"{F(axisY)}\" y2=\"{F(axisY)}\" stroke=\"#424242\"/>");
        for (double tick = 0; tick <= span + (step / 1000); tick += step)
        {
            double tx = x(tick);
            svg.Append(CultureInfo.InvariantCulture, $"<line x1=\"{F(tx)}\" x2=\"{F(tx)}\" y1=\"{F(axisY)}\" y2=\"{F(axisY + 5)}\" stroke=\"#424242\"/>");
            svg.Append(CultureInfo.InvariantCulture, $"<text class=\"tick\" x=\"{F(tx)}\" y=\"{F(axisY + 17)}\" text-anchor=\"middle\">{tick.ToString(step < 1 ? "0.##" : "0", CultureInfo.InvariantCulture)}</text>");
        }
        svg.Append(CultureInfo.InvariantCulture, $"<text x=\"{F(Left - 8)}\" y=\"{F(axisY + 17)}\" text-anchor=\"end\" fill=\"#424242\">time (ms)</text></g>\n");
    }

    private static void Legend(StringBuilder svg, double legendY)
    {
        svg.Append("<g id=\"legend\">");
        double lx = 12, ly = legendY;
        void Swatch(string cls, string color, string label, double opacity = 1)
        {
            if (lx + 30 + (label.Length * 7.2) > Width - Right)
            {
                lx = 12 + 70;
                ly += 20;
            }
            svg.Append(CultureInfo.InvariantCulture, $"<g class=\"legend-item {cls}\"><rect x=\"{F(lx)}\" y=\"{F(ly - 10)}\" width=\"14\" height=\"12\" fill=\"{color}\" fill-opacity=\"{F(opacity)}\" stroke=\"#757575\" stroke-width=\"0.5\"/><text x=\"{F(lx + 19)}\" y=\"{F(ly)}\">{Esc(label)}</text></g>");
            lx += 30 + (label.Length * 7.2);
        }
        void Heading(string text)
        {
            lx = 12;
            svg.Append(CultureInfo.InvariantCulture, $"<text x=\"{F(lx)}\" y=\"{F(ly)}\" font-weight=\"bold\">{Esc(text)}</text>");
            lx += 70;
        }
        Heading("phases");
        foreach (var (kind, color) in PhaseColors)
            Swatch("legend-phase", color, kind.Replace('_', '-'));
        ly += 20;
        Heading("states");
        foreach (var (kind, color) in StateColors)
            Swatch("legend-state", color, kind);
        ly += 20;
        Heading("marks");
        Swatch("legend-downtime", "#e53935", "downtime", 0.3);
        Swatch("legend-fault", "#d50000", "fault");
        Swatch("legend-recovery", "#1565c0", "recovery action");
        Swatch("legend-switchover", "#e65100", "switchover decision");
        Swatch("legend-arc", "#263238", "SET (tick; red = failed)");
        Swatch("legend-frames", "#1a237e", "data frames");
        Swatch("legend-round", "#0d47a1", "pre-copy round");
        svg.Append("</g>\n");
    }

    private static double NiceStep(double raw)
    {
        if (raw <= 0)
            return 1;
        double magnitude = Math.Pow(10, Math.Floor(Math.Log10(raw)));
        double n = raw / magnitude;
        return (n <= 1 ? 1 : n <= 2 ? 2 : n <= 5 ? 5 : 10) * magnitude;
    }

    private static string Color((string Kind, string Color)[] table, string kind)
        => Array.Find(table, c => c.Kind == kind).Color ?? "#bdbdbd";

    private static string Clip(string text, int max) => text.Length <= max ? text : text[..(max - 1)] + "…";

    private static string F(double v) => Math.Round(v, 1).ToString(CultureInfo.InvariantCulture);

    private static string Esc(string? text)
    {
        if (string.IsNullOrEmpty(text))
            return "";
        var sb = new StringBuilder(text.Length);
        foreach (char c in text)
        {
            switch (c)
            {
                case '<': sb.Append("&lt;"); break;
                case '>': sb.Append("&gt;"); break;
                case '&': sb.Append("&amp;"); break;
                case '"': sb.Append("&quot;"); break;
                default:
                    // XML 1.0 forbids most control characters even escaped.
                    if (c >= ' ' || c is '\t' or '\n')
                        sb.Append(c);
                    break;
            }
        }
        return sb.ToString();
    }
}
