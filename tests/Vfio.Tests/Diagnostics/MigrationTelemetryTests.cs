using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using Vfio.Diagnostics;
using Vfio.Engine;
using Vfio.Migration;
using Vfio.Tests.Engine;

namespace Vfio.Tests.Diagnostics;

/// <summary>The metrics and activities of <see cref="MigrationTelemetry"/> report what a migration did (docs/observability.md).</summary>
public sealed class MigrationTelemetryTests
{
    private const VfioMigrationFlags Caps7 = VfioMigrationFlags.StopCopy | VfioMigrationFlags.P2P | VfioMigrationFlags.PreCopy;

    [Fact]
    public async Task Migration_ReportsBytesByPhaseRoundsDowntimeArcLatencyAndActivities()
    {
        // Other tests migrate concurrently in this process: the metrics are checked as lower bounds and the
        // activities are picked by this run's migration id.
        var measurements = new ConcurrentBag<(string Name, double Value, Dictionary<string, object?> Tags)>();
        using var meters = new MeterListener();
        meters.InstrumentPublished = (instrument, listener) =>
        {
            if (instrument.Meter.Name == MigrationTelemetry.Name)
                listener.EnableMeasurementEvents(instrument);
        };
        meters.SetMeasurementEventCallback<long>((i, v, tags, _) => measurements.Add((i.Name, v, ToDictionary(tags))));
        meters.SetMeasurementEventCallback<double>((i, v, tags, _) => measurements.Add((i.Name, v, ToDictionary(tags))));
        meters.Start();
        var activities = new ConcurrentBag<Activity>();
        using var trace = ListenToActivities(activities);

        var id = Guid.NewGuid();
        await using var devices = new EngineTestDevices(1, Caps7, size: 2 << 20);
        var stats = await MigrationEngine.MigrateAsync(devices.Sources, devices.Destinations, MigrationOptions.Default with { MigrationId = id }, null, TestContext.Current.CancellationToken);
        meters.RecordObservableInstruments();

        var list = measurements.ToList();
        double Sum(string name, string side, string? phase = null) => list
            .Where(m => m.Name == name && Equals(m.Tags.GetValueOrDefault(MigrationTelemetry.SideTag), side) && (phase is null || Equals(m.Tags.GetValueOrDefault(MigrationTelemetry.PhaseTag), phase)))
            .Sum(m => m.Value);
        Assert.True(Sum("vfio.migration.bytes", "source", "pre_copy") >= stats.PreCopyBytes);
        Assert.True(Sum("vfio.migration.bytes", "source", "stop_copy") >= stats.StopCopyBytes);
        Assert.True(Sum("vfio.migration.bytes", "destination", "stop_copy") >= stats.StopCopyBytes);
        Assert.True(Sum("vfio.migration.rounds", "source") >= stats.Rounds);
        Assert.Contains(list, m => m.Name == "vfio.migration.downtime" && m.Value > 0);
        Assert.Contains(list, m => m.Name == "vfio.device.set_state.duration" && Equals(m.Tags[MigrationTelemetry.TargetStateTag], "STOP_COPY"));
        Assert.Contains(list, m => m.Name == "vfio.migration.duration" && Equals(m.Tags[MigrationTelemetry.OutcomeTag], "completed"));

        // One activity per side with the phases as children; SET calls are events of the phase that made them.
        var roots = activities.Where(a => Equals(a.GetTagItem("vfio.migration.id"), id.ToString("D"))).ToList();
        Assert.Equal(2, roots.Count);
        var source = Assert.Single(roots, a => a.DisplayName == "vfio.migration source");
        Assert.Equal("completed", source.GetTagItem(MigrationTelemetry.OutcomeTag));
        var phases = activities.Where(a => a.ParentSpanId == source.SpanId).ToList();
        Assert.Contains(phases, p => Equals(p.GetTagItem(MigrationTelemetry.PhaseTag), "pre_copy"));
        Assert.Contains(phases.SelectMany(p => p.Events), e => e.Name == "set_state" && Equals(e.Tags.First(t => t.Key == MigrationTelemetry.TargetStateTag).Value, "STOP_COPY"));
    }

    [Fact]
    public async Task FailedMigration_CountsAFailureByErrnoAndMarksTheActivity()
    {
        var failures = new ConcurrentBag<Dictionary<string, object?>>();
        using var meters = new MeterListener();
        meters.InstrumentPublished = (instrument, listener) =>
        {
            if (instrument.Meter.Name == MigrationTelemetry.Name && instrument.Name == "vfio.migration.failures")
                listener.EnableMeasurementEvents(instrument);
        };
        meters.SetMeasurementEventCallback<long>((_, _, tags, _) => failures.Add(ToDictionary(tags)));
        meters.Start();
        var activities = new ConcurrentBag<Activity>();
        using var trace = ListenToActivities(activities);

        var id = Guid.NewGuid();
        await using var devices = new EngineTestDevices(1, Caps7);
        var faulty = new FaultyDevice(devices.Sources[0], Errno.ENODEV) { FailSetStateTo = VfioMigrationState.StopCopy };
        await Assert.ThrowsAsync<MigrationException>(() => MigrationEngine.MigrateAsync([faulty], devices.Destinations, MigrationOptions.Default with { MigrationId = id }, null, TestContext.Current.CancellationToken));

        Assert.Contains(failures, t => Equals(t[MigrationTelemetry.ErrorTypeTag], "ENODEV") && Equals(t[MigrationTelemetry.SideTag], "source") && Equals(t[MigrationTelemetry.PhaseTag], "switchover"));
        var source = Assert.Single(activities, a => Equals(a.GetTagItem("vfio.migration.id"), id.ToString("D")) && a.DisplayName == "vfio.migration source");
        Assert.Equal(ActivityStatusCode.Error, source.Status);
        Assert.Equal("ENODEV", source.StatusDescription);
    }

    private static ActivityListener ListenToActivities(ConcurrentBag<Activity> stopped)
    {
        var listener = new ActivityListener
        {
            ShouldListenTo = s => s.Name == MigrationTelemetry.Name,
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = stopped.Add,
        };
        ActivitySource.AddActivityListener(listener);
        return listener;
    }

    private static Dictionary<string, object?> ToDictionary(ReadOnlySpan<KeyValuePair<string, object?>> tags)
    {
        var d = new Dictionary<string, object?>();
        foreach (var t in tags)
            d[t.Key] = t.Value;
        return d;
    }
}
