using System.IO.Pipelines;
using System.Text.Json;
using System.Xml.Linq;
using Vfio.Cli;
using Vfio.Cli.Report;
using Vfio.Diagnostics;
using Vfio.Engine;
using Vfio.Migration;
using Vfio.Tests.Engine;

namespace Vfio.Tests.Cli;

/// <summary><c>vfio-mig report</c> (docs/cli/report.md): records merged on one clock, the summary, and the SVG timeline parsed back.</summary>
public sealed class ReportCommandTests : IDisposable
{
    private const VfioMigrationFlags Caps7 = VfioMigrationFlags.StopCopy | VfioMigrationFlags.P2P | VfioMigrationFlags.PreCopy;
    private static readonly XNamespace Svg = "http://www.w3.org/2000/svg";
    private readonly string _dir = Directory.CreateTempSubdirectory("vfio-report-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public async Task Svg_OfACompletedMigration_HasALanePerSideAndDevice_PhasesStatesDowntimeAxisAndLegend()
    {
        string record = Path.Combine(_dir, "m.jsonl");
        await using (var devices = new EngineTestDevices(2, Caps7, size: 1 << 20, dirtyRate: 2 << 20))
        using (var recorder = FlightRecorder.ToFile(record))
            await MigrationEngine.MigrateAsync(devices.Sources, devices.Destinations, MigrationOptions.Default with { FlightRecorder = recorder }, null, TestContext.Current.CancellationToken);

        var timeline = FlightTimeline.Load([record]);
        var doc = XDocument.Parse(TimelineSvg.Render(timeline, "test"));

        var lanes = doc.Descendants(Svg + "g").Where(g => Classes(g).Contains("lane")).ToList();
        Assert.Equal(6, lanes.Count); // per side: a phase lane and two device lanes
        foreach (var side in new[] { "source", "destination" })
        {
            var phaseLane = Assert.Single(lanes, l => (string?)l.Attribute("data-side") == side && Classes(l).Contains("lane-phases"));
            var phases = Rects(phaseLane, "phase").ToList();
            Assert.Contains(phases, r => Classes(r).Contains("phase-pre_copy"));
            Assert.Contains(phases, r => Classes(r).Contains("phase-completed"));
            Assert.All(phases, r => Assert.NotEqual("#bdbdbd", (string?)r.Attribute("fill"))); // every phase has its colour
            for (int d = 0; d < 2; d++)
            {
                var lane = Assert.Single(lanes, l => (string?)l.Attribute("data-side") == side && (string?)l.Attribute("data-device") == d.ToString(System.Globalization.CultureInfo.InvariantCulture));
                var states = Rects(lane, "state").SelectMany(Classes).ToHashSet();
                Assert.Contains("state-RUNNING", states);
                Assert.Contains(side == "source" ? "state-STOP_COPY" : "state-RESUMING", states);
                Assert.Contains(lane.Descendants(Svg + "line"), l => Classes(l).Contains("arc"));
            }
        }

        // The downtime spans the lanes from the switchover to the last destination device RUNNING.
        var downtime = doc.Descendants(Svg + "g").Single(g => (string?)g.Attribute("id") == "downtime").Element(Svg + "rect")!;
        double x = Num(downtime, "x"), width = Num(downtime, "width");
        Assert.True(width > 0);
        double switchoverX = Num(doc.Descendants(Svg + "g").Single(g => (string?)g.Attribute("id") == "switchover").Element(Svg + "line")!, "x1");
        Assert.InRange(x, switchoverX - 3, switchoverX + 3); // the phase begins just before the decision is recorded
        Assert.True(Num(downtime, "height") > 5 * 26, "the shading crosses every lane");
        Assert.StartsWith("downtime ", downtime.Element(Svg + "title")!.Value, StringComparison.Ordinal);

        // An axis in ms with increasing ticks, and a legend naming every phase.
        var ticks = doc.Descendants(Svg + "text").Where(t => Classes(t).Contains("tick")).Select(t => double.Parse(t.Value, System.Globalization.CultureInfo.InvariantCulture)).ToList();
        Assert.True(ticks.Count >= 5);
        Assert.Equal(ticks.Order(), ticks);
        Assert.Contains(doc.Descendants(Svg + "text"), t => t.Value == "time (ms)");
        var legend = doc.Descendants(Svg + "g").Single(g => (string?)g.Attribute("id") == "legend").Value;
        foreach (var (phase, _) in TimelineSvg.PhaseColors)
            Assert.Contains(phase.Replace('_', '-'), legend, StringComparison.Ordinal);
        Assert.Contains("downtime", legend, StringComparison.Ordinal);
        Assert.Contains("fault", legend, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Svg_OfAFailedMigration_MarksTheFaultOnTheFailingDeviceAndTheRecovery()
    {
        string record = Path.Combine(_dir, "f.jsonl");
        await using (var devices = new EngineTestDevices(2, Caps7))
        using (var recorder = FlightRecorder.ToFile(record))
        {
            var faulty = new FaultyDevice(devices.Sources[1], Errno.EIO) { FailSetStateTo = VfioMigrationState.StopCopy };
            await Assert.ThrowsAsync<MigrationException>(() => MigrationEngine.MigrateAsync([devices.Sources[0], faulty], devices.Destinations, MigrationOptions.Default with { FlightRecorder = recorder }, null, TestContext.Current.CancellationToken));
        }
        var timeline = FlightTimeline.Load([record]);
        var doc = XDocument.Parse(TimelineSvg.Render(timeline, "failed"));
        var lane = doc.Descendants(Svg + "g").Single(g => Classes(g).Contains("lane") && (string?)g.Attribute("data-side") == "source" && (string?)g.Attribute("data-device") == "1");
        var fault = Assert.Single(lane.Descendants(Svg + "g"), g => Classes(g).Contains("fault"));
        Assert.Contains("EIO", fault.Element(Svg + "title")!.Value, StringComparison.Ordinal);
        Assert.Contains(lane.Descendants(Svg + "line"), l => Classes(l).Contains("arc-failed"));
        Assert.Contains(doc.Descendants(Svg + "path"), p => Classes(p).Contains("recovery"));

        var report = ReportJson.From(timeline, null);
        Assert.Equal("failed", report.Outcome);
        Assert.Equal("EIO", Assert.Single(report.Faults, f => f.Side == "source").Errno);
        Assert.Contains(report.Recovery, r => r is { Side: "source", Action: "rollback" });
    }

    // The correction makes the tightest send/receive pair equal; in doubles that equality may be off by a few ulps.
    private const double Rounding = 1e-6;

    // Two hosts' records whose wall clocks disagree by seconds: the merge shifts the destination so that every
    // frame arrives no earlier than it left (docs/flight-recorder.md, "Clocks").
    [Theory]
    [InlineData(5000)]
    [InlineData(-3000)]
    public async Task TwoRecords_WithSkewedWallClocks_AreAlignedByTheFramesBothSaw(int skewMs)
    {
        string source = Path.Combine(_dir, "src.jsonl"), destination = Path.Combine(_dir, "dst.jsonl");
        await using (var devices = new EngineTestDevices(1, Caps7))
        using (var a = FlightRecorder.ToFile(source))
        using (var b = FlightRecorder.ToFile(destination))
        {
            var forward = new Pipe();
            var back = new Pipe();
            var store = new InMemoryMigrationStore();
            var dst = new MigrationDestination(devices.Destinations, MigrationOptions.Default with { FlightRecorder = b, DecisionStore = store });
            var src = new MigrationSource(devices.Sources, MigrationOptions.Default with { FlightRecorder = a, DecisionStore = store });
            var receiving = Task.Run(() => dst.RunAsync(forward.Reader, back.Writer, null, TestContext.Current.CancellationToken), TestContext.Current.CancellationToken);
            await src.RunAsync(forward.Writer, back.Reader, null, TestContext.Current.CancellationToken);
            await receiving.WaitAsync(TimeSpan.FromSeconds(30), TestContext.Current.CancellationToken);
        }
        // The destination host's clock runs skewMs ahead: rewrite its anchor.
        var lines = await File.ReadAllLinesAsync(destination, TestContext.Current.CancellationToken);
        var header = JsonSerializer.Deserialize(lines[0], FlightRecordJsonContext.Default.FlightEvent)!;
        var wall = DateTimeOffset.Parse(header.Wall!, System.Globalization.CultureInfo.InvariantCulture).AddMilliseconds(skewMs);
        lines[0] = JsonSerializer.Serialize(header with { Wall = wall.ToString("O", System.Globalization.CultureInfo.InvariantCulture) }, FlightRecordJsonContext.Default.FlightEvent);
        await File.WriteAllLinesAsync(destination, lines, TestContext.Current.CancellationToken);

        var t = FlightTimeline.Load([source, destination]);
        Assert.InRange(t.ClockCorrectionMs, -skewMs - 2000, -skewMs + 2000);
        foreach (var name in new[] { "begin", "switchover", "end", "commit" })
        {
            double sent = t.Of("frame", "source").First(e => e.E.Dir == "out" && e.E.Name == name).T;
            double received = t.Of("frame", "destination").First(e => e.E.Dir == "in" && e.E.Name == name).T;
            Assert.True(received >= sent - Rounding, $"{name}: received at {received} before it was sent at {sent}");
        }
        foreach (var name in new[] { "ready", "load_result", "complete" })
        {
            double sent = t.Of("frame", "destination").First(e => e.E.Dir == "out" && e.E.Name == name).T;
            double received = t.Of("frame", "source").First(e => e.E.Dir == "in" && e.E.Name == name).T;
            Assert.True(received >= sent - Rounding, $"{name}: received at {received} before it was sent at {sent}");
        }
        Assert.NotNull(t.DowntimeStart);
        Assert.True(t.DowntimeEnd > t.DowntimeStart);
    }

    // End to end through the CLI: demo --record, then report --svg --json.
    [Fact]
    public async Task DemoRecord_ThenReport_PrintsJsonAndWritesTheSvg()
    {
        string record = Path.Combine(_dir, "demo.jsonl"), svg = Path.Combine(_dir, "demo.svg");
        var (exit, _, stderr) = await RunCliAsync("demo", "--size", "1MiB", "--record", record);
        Assert.True(exit == 0, stderr);
        (exit, var stdout, stderr) = await RunCliAsync("report", record, "--svg", svg, "--json");
        Assert.True(exit == 0, stderr);
        using var json = JsonDocument.Parse(stdout);
        Assert.True(json.RootElement.GetProperty("ok").GetBoolean());
        Assert.Equal("completed", json.RootElement.GetProperty("outcome").GetString());
        Assert.Equal(2, json.RootElement.GetProperty("sides").GetArrayLength());
        Assert.True(json.RootElement.GetProperty("downtime_ms").GetDouble() > 0);
        Assert.Equal(svg, json.RootElement.GetProperty("svg").GetString());
        XDocument.Load(svg);
    }

    // A failed migration without --record: its record is saved in the state directory and named in a hint line.
    [Fact]
    public async Task FailedMigrate_SavesTheRecordInTheStateDirectory_AndPrintsItsPath()
    {
        var (exit, _, stderr) = await RunCliAsync("migrate", "--from", "sample:size=1MiB,dirty-rate=256MiB/s", "--to", "sample:size=1MiB,seed=2",
            "--downtime-limit", "0ms", "--state-dir", _dir);
        Assert.Equal(ExitCodes.Failed, exit);
        var hint = stderr.Split('\n').Single(l => l.StartsWith("  hint: flight record: ", StringComparison.Ordinal));
        string path = hint["  hint: flight record: ".Length..].Split(' ')[0];
        Assert.StartsWith(Path.Combine(_dir, "flight") + "/", path, StringComparison.Ordinal);
        Assert.EndsWith(".migrate.jsonl", path, StringComparison.Ordinal);
        var (_, events) = FlightRecorder.Load(path);
        Assert.Contains(events, e => e is { Ev: "fault", Side: "source", Errno: "ETIMEDOUT" });
        Assert.Contains(events, e => e is { Ev: "recovery", Name: "rollback" });
    }

    [Fact]
    public void Resolve_AppendsItsDecisionToTheRecordsSavedInTheStateDirectory()
    {
        var id = Guid.NewGuid();
        string flight = Path.Combine(_dir, "flight"), path = Path.Combine(flight, $"{id:D}.migrate.jsonl");
        Directory.CreateDirectory(flight);
        using (var recorder = new FlightRecorder())
        {
            recorder.Add(new FlightEvent { Ev = "fault", Side = "source", Errno = "ETIMEDOUT" });
            recorder.Save(path);
        }
        int extended = FlightRecords.AppendResolution(_dir, id, "committed", [("source", "unix:a", "stopped for good (STOP)"), ("destination", "unix:b", "started (RUNNING)")]);
        Assert.Equal(1, extended);
        var (_, events) = FlightRecorder.Load(path);
        var resolve = events.Where(e => e is { Ev: "recovery", Name: "resolve" }).ToList();
        Assert.Equal(["source", "destination"], resolve.Select(e => e.Side));
        Assert.All(resolve, e => Assert.Equal("committed", e.Outcome));
        Assert.All(resolve, e => Assert.True(e.TMs >= events[0].TMs));
        Assert.Contains("started (RUNNING)", resolve[1].Detail, StringComparison.Ordinal);
        Assert.Equal(0, FlightRecords.AppendResolution(_dir, Guid.NewGuid(), "aborted", [("source", "unix:a", "resumed")]));
    }

    [Fact]
    public async Task BadInput_IsOneErrorLineWithItsExitCode()
    {
        string missing = Path.Combine(_dir, "missing.jsonl"), garbage = Path.Combine(_dir, "garbage.jsonl");
        await File.WriteAllTextAsync(garbage, "{\"t_ms\":0,\"ev\":\"recorder\",\"schema\":1,\"wall\":\"2026-12-07T06:00:00Z\"}\n{oops\n", TestContext.Current.CancellationToken);
        foreach (var (args, exit, line) in new[]
        {
            (new[] { "report", missing }, ExitCodes.Failed, "vfio-mig report: error: ENOENT: read flight record: "),
            (new[] { "report", garbage }, ExitCodes.Failed, "vfio-mig report: error: EBADMSG: read flight record: "),
            (new[] { "report", garbage, garbage, garbage }, ExitCodes.Usage, "vfio-mig report: error: "),
            (new[] { "report" }, ExitCodes.Usage, "vfio-mig report: error: "),
        })
        {
            var stderr = new StringWriter();
            Assert.Equal(exit, await CliApp.RunAsync(args, new StringWriter(), stderr, TestContext.Current.CancellationToken));
            Assert.StartsWith(line, stderr.ToString(), StringComparison.Ordinal);
            Assert.DoesNotContain("   at ", stderr.ToString(), StringComparison.Ordinal);
        }
    }

    private static Task<(int Exit, string Stdout, string Stderr)> RunCliAsync(params string[] args) => TestSupport.CliProcess.RunAsync(args);

    private static IEnumerable<XElement> Rects(XElement lane, string cls) => lane.Elements(Svg + "rect").Where(r => Classes(r).Contains(cls));

    private static string[] Classes(XElement e) => ((string?)e.Attribute("class") ?? "").Split(' ', StringSplitOptions.RemoveEmptyEntries);

    private static double Num(XElement e, string attribute) => double.Parse((string)e.Attribute(attribute)!, System.Globalization.CultureInfo.InvariantCulture);
}
