using System.CommandLine;
using System.Globalization;
using System.Text;
using Vfio.Cli.Report;

namespace Vfio.Cli.Commands;

/// <summary>
/// <c>vfio-mig report FILE [FILE2] [--svg OUT] [--json]</c>: merges the source's and the destination's flight records
/// (docs/flight-recorder.md) on one clock, prints what happened — phases, rounds, the switchover decision against the
/// measured downtime, faults and recovery actions — and draws the SVG timeline (docs/cli/report.md).
/// </summary>
internal static class ReportCommand
{
    public static Command Create()
    {
        var files = new Argument<string[]>("FILE")
        {
            Description = "Flight records (--record of demo, migrate, send, receive; or the one saved after a failure): one, or the source's and the destination's",
            Arity = new ArgumentArity(1, 2),
        };
        var svg = new Option<string?>("--svg") { HelpName = "OUT", Description = "Write the timeline picture to OUT (SVG: a lane per side and device, phases and device states coloured, downtime shaded, faults marked)" };
        var json = CliOptions.Json();
        var command = new Command("report", "Summarise flight records of a migration and draw its timeline as SVG.") { files, svg, json };
        command.WithHelp(addresses: false,
            "vfio-mig demo --record demo.jsonl && vfio-mig report demo.jsonl --svg demo.svg",
            "vfio-mig report src.jsonl dst.jsonl --svg timeline.svg        # send's and receive's records, merged",
            "vfio-mig report ~/.local/state/vfio-mig/flight/6f1c….migrate.jsonl --json");
        command.SetAction((parse, _) =>
        {
            var paths = parse.GetValue(files)!;
            var timeline = FlightTimeline.Load(paths);
            string? svgPath = parse.GetValue(svg);
            if (svgPath is not null)
            {
                string title = $"vfio-mig migration {timeline.MigrationId ?? "(id unknown)"}";
                try
                {
                    File.WriteAllText(svgPath, TimelineSvg.Render(timeline, title), new UTF8Encoding(false));
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                    throw new VfioException(e is UnauthorizedAccessException ? Errno.EACCES : Errno.EIO, "write --svg", $"{svgPath}: {e.Message}", e);
                }
            }
            var report = ReportJson.From(timeline, svgPath);
            if (parse.GetValue(json))
                CliJsonContext.Write(Console.Out, report, CliJsonContext.Default.ReportJson);
            else
                Print(Console.Out, report);
            return Task.FromResult(ExitCodes.Success);
        });
        return command;
    }

    private static void Print(TextWriter o, ReportJson r)
    {
        var ci = CultureInfo.InvariantCulture;
        o.WriteLine($"migration {r.MigrationId ?? "(id unknown)"}: {r.Outcome}");
        foreach (var rec in r.Records)
            o.WriteLine($"  record {rec.File}: host {rec.Host}, pid {rec.Pid}, started {rec.Wall}");
        if (r.ClockCorrectionMs != 0)
            o.WriteLine($"  clock correction: the second record was shifted {FlightTimeline.Ms(r.ClockCorrectionMs)} beyond its wall-clock anchor (frames cannot arrive before they leave)");
        foreach (var s in r.Sides)
        {
            o.WriteLine(string.Create(ci, $"{s.Side}: {s.Outcome} after {FlightTimeline.Ms(s.TotalMs)}; {s.Sets} SET(s), {s.FailedSets} failed; {Units.FormatBytes(s.DataBytes)} of device data{(s.Rounds > 0 ? $" ({s.Rounds} pre-copy round(s))" : "")}"));
            o.WriteLine("  phases: " + string.Join(", ", s.Phases.Select(p => $"{p.Phase.Replace('_', '-')} {FlightTimeline.Ms(p.DurationMs)}")));
        }
        if (r.Switchover is { } sw)
        {
            o.WriteLine(string.Create(ci, $"switchover: after {sw.Round} round(s), pending {Units.FormatBytes(sw.PendingBytes)} (allowed {Units.FormatBytes(sw.ThresholdBytes)}), bandwidth {Units.FormatBytes(sw.BandwidthBps)}/s{(sw.Forced ? ", FORCED" : "")}"));
            o.WriteLine($"  predicted downtime {(sw.PredictedDowntimeMs is { } p ? FlightTimeline.Ms(p) : "n/a (bandwidth not measured yet)")} (fixed cost {FlightTimeline.Ms(sw.FixedCostMs ?? 0)}), limit {FlightTimeline.Ms(sw.LimitMs)}");
        }
        if (r.DowntimeMs is { } d)
        {
            string engine = r.Sides.FirstOrDefault(s => s.Side == "source")?.EngineDowntimeMs is { } e ? $"; the source measured {FlightTimeline.Ms(e)} (until it heard of it)" : "";
            string predicted = r.Switchover?.PredictedDowntimeMs is { } pr ? $"; predicted {FlightTimeline.Ms(pr)}" : "";
            o.WriteLine($"downtime: {FlightTimeline.Ms(d)} on the timeline (switchover to the last device RUNNING){engine}{predicted}");
        }
        o.WriteLine(r.Faults.Count == 0 ? "faults: none" : "faults:");
        foreach (var f in r.Faults)
            o.WriteLine($"  {FlightTimeline.Ms(f.TMs)} {f.Side}{(f.Device is { } dv ? $" device {dv}" : "")} in {f.Phase}: {f.Errno}: {f.Detail}");
        if (r.Recovery.Count > 0)
            o.WriteLine("recovery:");
        foreach (var a in r.Recovery)
            o.WriteLine($"  {FlightTimeline.Ms(a.TMs)} {a.Side} {a.Action}: {a.Detail}");
        foreach (var w in r.Wire)
            o.WriteLine(string.Create(ci, $"wire: {w.Side} {w.Dir} {w.Frames} {w.Type} frame(s), {Units.FormatBytes(w.Bytes)}"));
        if (r.Svg is not null)
            o.WriteLine($"timeline: {r.Svg}");
    }
}
