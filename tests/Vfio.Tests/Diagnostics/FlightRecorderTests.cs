using Vfio.Diagnostics;
using Vfio.Engine;
using Vfio.Migration;
using Vfio.Sample;
using Vfio.Tests.Engine;

namespace Vfio.Tests.Diagnostics;

/// <summary>The flight recorder (docs/flight-recorder.md): both halves of one migration on one timeline.</summary>
public sealed class FlightRecorderTests
{
    private const VfioMigrationFlags Caps7 = VfioMigrationFlags.StopCopy | VfioMigrationFlags.P2P | VfioMigrationFlags.PreCopy;

    [Fact]
    public async Task Migration_RecordsThePrecopyInfoV2OptInTheReinitAndTheCompatibilityCheck()
    {
        // The engine sees its devices through the recorder's wrapper: the opt-in and the profile must still reach
        // the real device (spec §4.7: REINIT only after the opt-in), and each step is on the timeline.
        const long size = 1 << 20;
        var s = new SampleDevice(new SampleDeviceOptions { SizeBytes = size, Capabilities = Caps7, Seed = 7, ReinitAfterBytes = size / 2 });
        var d = new SampleDevice(new SampleDeviceOptions { SizeBytes = size, Capabilities = Caps7, Seed = 8 });
        await using var source = new InProcessMigrationDevice(s, "sample:src", ownsDevice: true);
        await using var destination = new InProcessMigrationDevice(d, "sample:dst", ownsDevice: true);
        using var recorder = new FlightRecorder();
        var stats = await MigrationEngine.MigrateAsync([source], [destination], MigrationOptions.Default with { FlightRecorder = recorder }, null, TestContext.Current.CancellationToken);
        var events = recorder.Snapshot();

        Assert.Equal(1, stats.Devices[0].Reinits);
        Assert.Contains(events, e => e is { Ev: "precopy_info_v2", Side: "source", Dev: 0, Detail: "enabled" });
        Assert.Single(events, e => e is { Ev: "reinit", Side: "source", Dev: 0 });
        Assert.Contains(events, e => e is { Ev: "compat", Side: "destination", Outcome: "compatible" });
        Assert.Equal(s.ComputeSha256(), d.ComputeSha256());
    }

    [Fact]
    public async Task Migration_RecordsArcsSessionsRoundsSwitchoverFramesAndOutcome_OfBothHalves()
    {
        await using var devices = new EngineTestDevices(2, Caps7, size: 1 << 20, dirtyRate: 4 << 20);
        using var recorder = new FlightRecorder();
        var stats = await MigrationEngine.MigrateAsync(devices.Sources, devices.Destinations, MigrationOptions.Default with { FlightRecorder = recorder }, null, TestContext.Current.CancellationToken);
        var events = recorder.Snapshot();

        // Every SET the engine made, per side and device, with its result.
        var arcs = events.Where(e => e.Ev == "arc").ToList();
        foreach (var side in new[] { "source", "destination" })
        {
            for (int d = 0; d < 2; d++)
                Assert.Contains(arcs, a => a.Side == side && a.Dev == d && a.Errno is null);
        }
        Assert.Contains(arcs, a => a is { Side: "source", To: "PRE_COPY", From: "RUNNING" });
        Assert.Contains(arcs, a => a is { Side: "source", To: "STOP_COPY" });
        Assert.Contains(arcs, a => a is { Side: "destination", To: "RESUMING" });
        Assert.Contains(arcs, a => a is { Side: "destination", To: "RUNNING" });
        Assert.All(arcs, a => Assert.True(a.DurMs >= 0));

        // Data sessions open and close with the bytes that went through them.
        long savedBytes = events.Where(e => e is { Ev: "session_close", Side: "source", Name: "saving" }).Sum(e => e.Bytes ?? 0);
        long loadedBytes = events.Where(e => e is { Ev: "session_close", Side: "destination", Name: "resuming" }).Sum(e => e.Bytes ?? 0);
        Assert.Equal(stats.TotalBytes, savedBytes);
        Assert.Equal(stats.TotalBytes, loadedBytes);

        // Rounds, PRECOPY_INFO answers and the switchover decision with its inputs.
        Assert.Equal(stats.Rounds, events.Count(e => e is { Ev: "round", Side: "source" }));
        Assert.Contains(events, e => e is { Ev: "precopy_info", Side: "source", InitialBytes: not null, DirtyBytes: not null });
        var switchover = Assert.Single(events, e => e.Ev == "switchover");
        Assert.Equal(stats.PendingBytesAtSwitchover, switchover.PendingBytes);
        Assert.Equal(MigrationOptions.Default.DowntimeLimit.TotalMilliseconds, switchover.LimitMs);
        Assert.NotNull(switchover.FixedCostMs);

        // Frames: control frames one by one, data frames as bounded runs whose bytes add up.
        Assert.Contains(events, e => e is { Ev: "frame", Side: "source", Dir: "out", Name: "switchover" });
        Assert.Contains(events, e => e is { Ev: "frame", Side: "destination", Dir: "in", Name: "commit" });
        long runBytes = events.Where(e => e is { Ev: "frames", Side: "source", Dir: "out" }).Sum(e => e.Bytes ?? 0);
        Assert.Equal(stats.TotalBytes, runBytes);
        Assert.True(events.Count(e => e.Ev == "frames") < events.Count(e => e.Ev == "arc") + (4 * stats.Rounds) + 8, "data frames are summarised, not one event each");

        // Outcome and measured downtime on both sides; time never runs backwards within a side's phases.
        Assert.Contains(events, e => e is { Ev: "outcome", Side: "source", Outcome: "completed" });
        Assert.Contains(events, e => e is { Ev: "outcome", Side: "destination", Outcome: "completed" });
        Assert.Equal(Math.Round(stats.Downtime.TotalMilliseconds, 3), events.Single(e => e is { Ev: "statistics", Side: "source" }).DowntimeMs);
        var phases = events.Where(e => e is { Ev: "phase", Side: "source" }).ToList();
        Assert.Equal(["setup", "pre_copy", "switchover", "stop_copy", "validate", "start", "cleanup", "completed"], phases.Select(p => p.Phase));
        Assert.True(phases.Zip(phases.Skip(1)).All(p => p.First.TMs <= p.Second.TMs));
    }

    [Fact]
    public async Task FailedMigration_RecordsTheFaultTheFailedArcAndTheRecovery()
    {
        await using var devices = new EngineTestDevices(2, Caps7);
        using var recorder = new FlightRecorder();
        var faulty = new FaultyDevice(devices.Sources[1], Errno.EIO) { FailSetStateTo = VfioMigrationState.StopCopy };
        var ex = await Assert.ThrowsAsync<MigrationException>(() => MigrationEngine.MigrateAsync([devices.Sources[0], faulty], devices.Destinations, MigrationOptions.Default with { FlightRecorder = recorder }, null, TestContext.Current.CancellationToken));
        var events = recorder.Snapshot();

        Assert.Contains(events, e => e is { Ev: "arc", Side: "source", Dev: 1, To: "STOP_COPY", Errno: "EIO" });
        var fault = Assert.Single(events, e => e is { Ev: "fault", Side: "source" });
        Assert.Equal("EIO", fault.Errno);
        Assert.Equal(1, fault.Dev);
        Assert.Equal("switchover", fault.Phase);
        Assert.Contains(events, e => e is { Ev: "recovery", Side: "source", Name: "rollback" });
        Assert.Contains(events, e => e is { Ev: "frame", Side: "source", Dir: "out", Name: "abort" });
        // The rollback's own SETs back to RUNNING are on the timeline after the fault.
        Assert.Contains(events, e => e is { Ev: "arc", Side: "source", To: "RUNNING", Errno: null } && e.TMs >= fault.TMs);
        Assert.Contains(events, e => e is { Ev: "outcome", Side: "source", Outcome: "aborted" });
        Assert.Contains(events, e => e is { Ev: "reset", Side: "destination" });
        Assert.Equal(Errno.EIO, ex.Errno);
    }

    [Fact]
    public async Task ToFile_StreamsJsonLinesThatLoadBack_AndSaveWritesTheRing()
    {
        string dir = Directory.CreateTempSubdirectory("vfio-flight-").FullName;
        try
        {
            string streamed = Path.Combine(dir, "a.jsonl");
            await using var devices = new EngineTestDevices(1, Caps7);
            using (var recorder = FlightRecorder.ToFile(streamed))
            {
                await MigrationEngine.MigrateAsync(devices.Sources, devices.Destinations, MigrationOptions.Default with { FlightRecorder = recorder }, null, TestContext.Current.CancellationToken);
                string saved = Path.Combine(dir, "b.jsonl");
                recorder.Save(saved);
                var (savedHeader, savedEvents) = FlightRecorder.Load(saved);
                Assert.Equal(recorder.Header.Wall, savedHeader.Wall);
                Assert.Equal(recorder.Snapshot().Count, savedEvents.Count);
            }
            string[] lines = await File.ReadAllLinesAsync(streamed, TestContext.Current.CancellationToken);
            Assert.StartsWith("{\"t_ms\":0,\"ev\":\"recorder\"", lines[0], StringComparison.Ordinal);
            Assert.Contains(lines, l => l.Contains("\"ev\":\"arc\"", StringComparison.Ordinal) && l.Contains("\"to\":\"STOP_COPY\"", StringComparison.Ordinal));
            var (header, events) = FlightRecorder.Load(streamed);
            Assert.Equal(FlightRecorder.SchemaVersion, header.Schema);
            Assert.True(DateTimeOffset.TryParse(header.Wall, System.Globalization.CultureInfo.InvariantCulture, out _));
            Assert.Equal(lines.Length - 1, events.Count);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void Ring_KeepsTheLastEvents_AndSaveSaysHowManyWereDropped()
    {
        using var recorder = new FlightRecorder(capacity: 16);
        for (int i = 0; i < 40; i++)
            recorder.Add(new FlightEvent { Ev = "note", Count = i });
        var kept = recorder.Snapshot();
        Assert.Equal(16, kept.Count);
        Assert.Equal(Enumerable.Range(24, 16).Select(i => (long?)i), kept.Select(e => e.Count));
        string path = Path.Combine(Path.GetTempPath(), $"vfio-ring-{Guid.NewGuid():N}.jsonl");
        try
        {
            recorder.Save(path);
            var (_, events) = FlightRecorder.Load(path);
            Assert.Equal(17, events.Count);
            Assert.Equal(24, events[0].Count);
            Assert.Contains("dropped", events[0].Detail, StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Theory]
    [InlineData("{\"ev\":\"arc\"}\n", "no recorder line")]
    [InlineData("{\"t_ms\":0,\"ev\":\"recorder\",\"schema\":1}\nnot json\n", "line 2")]
    [InlineData("{\"t_ms\":0,\"ev\":\"recorder\",\"schema\":99}\n", "schema 99")]
    public void Load_BadFile_IsOneClearError(string content, string expected)
    {
        string path = Path.Combine(Path.GetTempPath(), $"vfio-bad-{Guid.NewGuid():N}.jsonl");
        File.WriteAllText(path, content);
        try
        {
            var ex = Assert.Throws<VfioException>(() => FlightRecorder.Load(path));
            Assert.Contains(expected, ex.Message, StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(path);
        }
    }
}
