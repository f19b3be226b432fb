using Vfio.Conformance;
using Vfio.User.Client;

namespace Vfio.IntegrationTests;

/// <summary>
/// vfio-mig check against vfio-user devices that misbehave the way real ones do (MisbehavingVfioUserDevice): each
/// deviation is exactly the FAILs and BLOCKED expected for it; every other rule passes, except the few a vfio-user
/// transport cannot show (skipped with the reason).
/// </summary>
public sealed class CheckMisbehavingDeviceTests
{
    // Not observable over vfio-user: arcs walked inside the server; PRECOPY_INFO (emulated by our client).
    private static readonly string[] s_transportSkips = ["fsm.arc-trace", "precopy.info-initial-bytes", "precopy.info-outside-precopy"];

    private static async Task<ConformanceReport> CheckAsync(MisbehavingVfioUserDevice device)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var client = await VfioUserMigrationDevice.ConnectAsync(device.Path, null, ct);
        var options = new ConformanceOptions { AllowDestructive = true, DeterministicStreams = true };
        return await ConformanceChecker.RunAsync(client, options, ct).WaitAsync(TimeSpan.FromMinutes(3), ct);
    }

    private static string Show(ConformanceReport report)
        => string.Join("\n", report.Results.Select(r => $"{r.Rule} {r.Verdict} {r.BlockedBy} {r.Detail}"));

    // Exactly these FAILs and BLOCKED (with their cause); PASS everywhere else but the transport's skips.
    private static void AssertVerdicts(ConformanceReport report, string[] fails, (string Rule, string By)[] blocked)
    {
        string all = Show(report);
        Assert.True(fails.Order().SequenceEqual(report.Results.Where(r => r.Verdict == ConformanceVerdict.Fail).Select(r => r.Rule).Order()), all);
        Assert.True(blocked.Select(b => $"{b.Rule}<{b.By}").Order().SequenceEqual(
            report.Results.Where(r => r.Verdict == ConformanceVerdict.Blocked).Select(r => $"{r.Rule}<{r.BlockedBy}").Order()), all);
        var skipped = report.Results.Where(r => r.Verdict == ConformanceVerdict.Skip).Select(r => r.Rule).ToList();
        Assert.True(skipped.All(s_transportSkips.Contains), all);
        Assert.Equal(ConformanceCatalog.Rules.Count, report.Results.Count);
    }

    [Fact]
    public async Task Our_server_behind_a_plain_relay_conforms()
    {
        await using var device = new MisbehavingVfioUserDevice(Misbehaviour.None);

        var report = await CheckAsync(device);

        AssertVerdicts(report, [], []);
        Assert.Contains("refused by the device", report.Find("sessions.stale-stream")!.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Reset_that_keeps_the_migration_state_fails_probe_reset_once_and_blocks_only_what_needs_a_reset()
    {
        await using var device = new MisbehavingVfioUserDevice(Misbehaviour.ResetKeepsState);

        var report = await CheckAsync(device);

        AssertVerdicts(report, ["probe.reset"],
            [("sessions.stale-after-reset", "probe.reset"), ("sessions.resume-truncated", "probe.reset"), ("sessions.resume-reordered", "probe.reset")]);
        var reset = report.Find("probe.reset")!.Detail;
        Assert.Contains("reset in STOP failed with EINVAL", reset, StringComparison.Ordinal);
        Assert.Contains("after a reset in RESUMING GET shows RESUMING", reset, StringComparison.Ordinal);
        Assert.Equal(Migration.VfioMigrationState.Running, device.ServerState);
    }

    [Fact]
    public async Task Logging_ranges_ignored_fail_each_range_rule_once()
    {
        await using var device = new MisbehavingVfioUserDevice(Misbehaviour.IgnoreLoggingRanges);

        var report = await CheckAsync(device);

        AssertVerdicts(report, ["dirty.too-many-ranges", "dirty.misaligned", "dirty.overflow", "dirty.overlap"], []);
        Assert.Contains("257 ranges was accepted (expected E2BIG)", report.Find("dirty.too-many-ranges")!.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Only_64_byte_reads_fail_probe_read_size_once_and_the_rest_reads_64_bytes_at_a_time()
    {
        await using var device = new MisbehavingVfioUserDevice(Misbehaviour.Only64ByteReads);

        var report = await CheckAsync(device);

        AssertVerdicts(report, ["probe.read-size"], []);
        Assert.Contains("reads of 64 B work", report.Find("probe.read-size")!.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_device_that_dies_halfway_fails_the_rule_it_died_in_and_blocks_every_later_rule()
    {
        await using var device = new MisbehavingVfioUserDevice(Misbehaviour.DieAtLoggingStart);

        var report = await CheckAsync(device);

        Assert.True(device.Died);
        Assert.Equal("dirty.zero-ranges", report.DeviceLost?.Rule);
        string[] later = [.. ConformanceCatalog.Rules.Where(r => r.Group is ConformanceGroups.DirtyLogging or ConformanceGroups.Robustness && r.Id != "dirty.zero-ranges").Select(r => r.Id), "probe.reset", "probe.restore"];
        AssertVerdicts(report, ["dirty.zero-ranges"], [.. later.Select(r => (r, "dirty.zero-ranges"))]);
        Assert.Contains("ECONNRESET", report.Find("dirty.zero-ranges")!.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_device_that_dies_on_a_large_read_is_reported_there_and_nothing_after_it_runs()
    {
        await using var device = new MisbehavingVfioUserDevice(Misbehaviour.DieOnLargeRead);

        var report = await CheckAsync(device);

        Assert.Equal("probe.read-size", report.DeviceLost?.Rule);
        string[] later = [.. ConformanceCatalog.Rules.Select(r => r.Id).Where(id => id is not ("probe.capabilities" or "probe.state" or "probe.read-size"))];
        AssertVerdicts(report, ["probe.read-size"], [.. later.Select(r => (r, "probe.read-size"))]);
    }

    [Fact]
    public async Task Libvfio_user_as_its_source_defines_it_reset_ranges_and_mapped_region_reports()
    {
        // Reports name the DMA_MAP'd region, so page-size and read-and-clear pass; the overflow report names no region.
        await using var device = new MisbehavingVfioUserDevice(Misbehaviour.ResetKeepsState | Misbehaviour.IgnoreLoggingRanges | Misbehaviour.ReportOnlyMappedRegions);

        var report = await CheckAsync(device);

        AssertVerdicts(report, ["probe.reset", "dirty.too-many-ranges", "dirty.misaligned", "dirty.overflow", "dirty.overlap", "dirty.report-overflow"],
            [("sessions.stale-after-reset", "probe.reset"), ("sessions.resume-truncated", "probe.reset"), ("sessions.resume-reordered", "probe.reset")]);
        Assert.Contains("ENOENT", report.Find("dirty.report-overflow")!.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Stale_stream_rules_judge_the_devices_answer_not_our_clients_stream_object()
    {
        // The device answers data reads outside a saving state: our client's ended stream objects would still say ENODEV.
        await using var device = new MisbehavingVfioUserDevice(Misbehaviour.ReadsOutsideSession);

        var report = await CheckAsync(device);

        AssertVerdicts(report, ["sessions.stale-stream", "sessions.stale-after-reset", "robustness.raw-messages"], []);
        Assert.Contains("was answered with", report.Find("sessions.stale-stream")!.Detail, StringComparison.Ordinal);
    }
}
