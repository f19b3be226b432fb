using System.Text.Json;
using Vfio.Conformance;
using Vfio.Migration;
using Vfio.Sample;
using static Vfio.Tests.Conformance.ConformanceTestDevices;

namespace Vfio.Tests.Conformance;

public class ConformanceCheckerTests
{
    // Every rule, the fault that breaks it, and the caps to run on. The probe and robustness rules are
    // broken by decorators instead (tests below); RuleTable_CoversEveryCatalogRule keeps this complete.
    public static TheoryData<string, string, ulong> FaultRules => new()
    {
        { "refuse-arc", "fsm.legal-arcs", 0x7 },
        { "refuse-arc", "fsm.paths", 0x7 },
        { "wrong-path", "fsm.arc-trace", 0x7 },
        { "wrong-path", "fsm.arc-trace", 0x3 },
        { "same-state-stream", "fsm.same-state", 0x7 },
        { "ignore-invalid", "fsm.rejections", 0x1 },
        { "ignore-invalid", "fsm.rejections", 0x7 },
        { "error-settable", "fsm.error-unrequestable", 0x7 },
        { "reuse-stream", "sessions.stale-stream", 0x7 },
        { "reuse-stream", "sessions.stale-stream", 0x1 },
        { "reuse-stream", "sessions.stale-after-reset", 0x7 },
        { "no-eof", "sessions.stop-copy-eof", 0x7 },
        { "same-state-stream", "sessions.same-state-no-stream", 0x7 },
        { "bad-estimate", "sessions.stop-copy-size", 0x7 },
        { "accept-truncated", "sessions.resume-truncated", 0x7 },
        { "accept-corrupt", "sessions.resume-reordered", 0x7 },
        { "initial-bytes-grow", "precopy.info-initial-bytes", 0x5 },
        { "info-any-state", "precopy.info-outside-precopy", 0x7 },
        { "ignore-invalid", "precopy.stop-copy-to-pre-copy", 0x5 },
        { "corrupt-load", "round-trip.resume", 0x7 },
        { "logging-no-validate", "dirty.zero-ranges", 0x7 },
        { "logging-no-validate", "dirty.too-many-ranges", 0x7 },
        { "logging-no-validate", "dirty.misaligned", 0x7 },
        { "logging-no-validate", "dirty.overflow", 0x7 },
        { "logging-no-validate", "dirty.overlap", 0x7 },
        { "logging-no-validate", "dirty.report-page-size", 0x7 },
        { "logging-no-validate", "dirty.report-overflow", 0x7 },
        { "logging-no-clear", "dirty.read-and-clear", 0x7 },
    };

    private static readonly string[] s_coveredElsewhere =
        ["probe.capabilities", "probe.state", "probe.reset", "probe.read-size", "probe.restore", "precopy.temporary-end", "robustness.raw-messages"];

    [Theory]
    [MemberData(nameof(FaultRules))]
    public async Task Check_FailsOnTheMatchingFault_AndPassesWithout(string faultName, string ruleId, ulong caps)
    {
        Assert.True(SampleDeviceFaultNames.TryParse(faultName, out var fault));
        string group = ConformanceCatalog.Get(ruleId).Group;

        var clean = await CheckAsync(caps: caps, group: group);
        var faulty = await CheckAsync(fault, caps, group);

        Assert.Equal(ConformanceVerdict.Pass, clean.Find(ruleId)?.Verdict);
        var result = faulty.Find(ruleId);
        Assert.NotNull(result);
        Assert.Equal(ConformanceVerdict.Fail, result.Verdict);
        Assert.False(string.IsNullOrWhiteSpace(result.Detail));
        Assert.True(faulty.Failed > 0);
    }

    [Fact]
    public void RuleTable_CoversEveryCatalogRule()
    {
        var covered = FaultRules.Select(row => (string)row.Data.Item2).Concat(s_coveredElsewhere).ToHashSet();
        var missing = ConformanceCatalog.Rules.Select(r => r.Id).Where(id => !covered.Contains(id)).ToList();
        Assert.Empty(missing);
    }

    [Theory]
    [InlineData(0x1ul)]
    [InlineData(0x3ul)]
    [InlineData(0x5ul)]
    [InlineData(0x7ul)]
    public async Task CleanSampleDevice_PassesEveryApplicableRule(ulong caps)
    {
        var report = await CheckAsync(caps: caps);

        Assert.Equal(0, report.Failed);
        var expectedSkips = new List<string> { "robustness.raw-messages" };
        if ((caps & 0x4) == 0)
            expectedSkips.AddRange(ConformanceCatalog.Rules.Where(r => r.Group == ConformanceGroups.PreCopy).Select(r => r.Id));
        Assert.Equal(expectedSkips.Order(), report.Results.Where(r => r.Verdict == ConformanceVerdict.Skip).Select(r => r.Rule).Order());
        Assert.Equal(ConformanceCatalog.Rules.Count, report.Results.Count);
        Assert.Equal($"{report.Passed} passed, 0 failed, {report.Skipped} skipped, 0 blocked", report.Summary);
    }

    [Fact]
    public async Task SkipEnomsg_PassesWithAWarning_AndFailsWhenStrict()
    {
        var clean = await CheckAsync(group: ConformanceGroups.PreCopy);
        var lenient = await CheckAsync(SampleDeviceFaults.SkipEnomsg, group: ConformanceGroups.PreCopy);
        var strict = await CheckAsync(SampleDeviceFaults.SkipEnomsg, group: ConformanceGroups.PreCopy, strict: true);

        var ok = clean.Find("precopy.temporary-end")!;
        Assert.Equal(ConformanceVerdict.Pass, ok.Verdict);
        Assert.Null(ok.Warning);
        var warned = lenient.Find("precopy.temporary-end")!;
        Assert.Equal(ConformanceVerdict.Pass, warned.Verdict);
        Assert.Contains("ENOMSG", warned.Warning, StringComparison.Ordinal);
        Assert.Equal(ConformanceVerdict.Fail, strict.Find("precopy.temporary-end")!.Verdict);
    }

    [Fact]
    public async Task WrongPath_OnCaps0x3_IsSeenAsRunningToStopDirectly()
    {
        var report = await CheckAsync(SampleDeviceFaults.WrongPath, 0x3, ConformanceGroups.Fsm);

        Assert.Contains("RUNNING→STOP: walked RUNNING>STOP instead of RUNNING>RUNNING_P2P>STOP", report.Find("fsm.arc-trace")!.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ArcTrace_IsSkippedWithAReason_WhenTheTransportCannotReportArcs()
    {
        using var sample = NewSample();
        await using var device = new OpaqueDevice(new InProcessMigrationDevice(sample, "sample:opaque"));

        var report = await ConformanceChecker.RunAsync(device, Options(sample, ConformanceGroups.Fsm), TestContext.Current.CancellationToken);

        var trace = report.Find("fsm.arc-trace")!;
        Assert.Equal(ConformanceVerdict.Skip, trace.Verdict);
        Assert.Contains("IMigrationArcTrace", trace.Detail, StringComparison.Ordinal);
        Assert.Equal(0, report.Failed);
    }

    [Fact]
    public async Task DestructiveChecks_AreSkippedWithAReason_WithoutPermissionOrPeer()
    {
        var report = await CheckAsync(destructive: false);

        foreach (var id in (string[])["sessions.resume-truncated", "sessions.resume-reordered", "round-trip.resume"])
        {
            var r = report.Find(id)!;
            Assert.Equal(ConformanceVerdict.Skip, r.Verdict);
            Assert.Contains("--allow-destructive", r.Detail, StringComparison.Ordinal);
        }
        Assert.Equal(0, report.Failed);
        Assert.Equal(ConformanceVerdict.Pass, report.Find("probe.restore")!.Verdict);
    }

    [Fact]
    public async Task Peer_TakesTheResumes_AndItsFaultsAreFound()
    {
        var ct = TestContext.Current.CancellationToken;
        using var sample = NewSample();
        using var goodPeer = NewSample(seed: 5);
        using var badPeer = NewSample(SampleDeviceFaults.CorruptLoad | SampleDeviceFaults.AcceptTruncated, seed: 6);
        await using var device = new InProcessMigrationDevice(sample, "sample:a");
        await using var good = new InProcessMigrationDevice(goodPeer, "sample:good");
        await using var bad = new InProcessMigrationDevice(badPeer, "sample:bad");
        byte[] before = sample.ComputeSha256();

        var withGood = await ConformanceChecker.RunAsync(device, Options(sample, ConformanceGroups.RoundTrip, destructive: false, peer: good), ct);
        var withBad = await ConformanceChecker.RunAsync(device, Options(sample, ConformanceGroups.Sessions, destructive: false, peer: bad), ct);
        var badRoundTrip = await ConformanceChecker.RunAsync(device, Options(sample, ConformanceGroups.RoundTrip, destructive: false, peer: bad), ct);

        Assert.Equal(ConformanceVerdict.Pass, withGood.Find("round-trip.resume")!.Verdict);
        Assert.Contains("peer sample:good", withGood.Find("round-trip.resume")!.Detail, StringComparison.Ordinal);
        Assert.Equal(sample.ComputeSha256(), goodPeer.ComputeSha256());
        Assert.Equal(ConformanceVerdict.Fail, withBad.Find("sessions.resume-truncated")!.Verdict);
        Assert.Equal(ConformanceVerdict.Fail, badRoundTrip.Find("round-trip.resume")!.Verdict);
        Assert.Equal(before, sample.ComputeSha256());
    }

    [Fact]
    public async Task OpaqueStreams_RoundTripByResumingTheReSave()
    {
        using var sample = NewSample();
        await using var device = new InProcessMigrationDevice(sample, "sample:x");

        var report = await ConformanceChecker.RunAsync(device, Options(sample, ConformanceGroups.RoundTrip) with { DeterministicStreams = false }, TestContext.Current.CancellationToken);

        Assert.Equal(ConformanceVerdict.Pass, report.Find("round-trip.resume")!.Verdict);
        Assert.Contains("resumed again", report.Find("round-trip.resume")!.Detail, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(null)]
    [InlineData(0x2ul)]
    [InlineData(0x4ul)]
    public async Task ProbeCapabilities_FailsOnMissingOrUndefinedCaps_AndEverythingElseIsSkipped(ulong? caps)
    {
        using var sample = NewSample();
        await using var device = new CapsDevice(new InProcessMigrationDevice(sample, "sample:caps"), (VfioMigrationFlags?)caps);

        var report = await ConformanceChecker.RunAsync(device, Options(sample), TestContext.Current.CancellationToken);

        Assert.Equal(ConformanceVerdict.Fail, report.Find("probe.capabilities")!.Verdict);
        Assert.Equal(1, report.Failed);
        Assert.Equal(0, report.Passed);
        Assert.Equal(ConformanceCatalog.Rules.Count - 1, report.Skipped);
    }

    [Fact]
    public async Task ProbeState_ReachesRunningBySet_AndOnlyProbeResetFails_WhenResetDoesNothing()
    {
        using var sample = NewSample();
        sample.SetState(VfioMigrationState.Stop);
        await using var device = new NoResetDevice(new InProcessMigrationDevice(sample, "sample:noreset"));

        var report = await ConformanceChecker.RunAsync(device, Options(sample, ConformanceGroups.Fsm), TestContext.Current.CancellationToken);

        Assert.Equal(ConformanceVerdict.Pass, report.Find("probe.state")!.Verdict);
        Assert.Contains("initial state STOP", report.Find("probe.state")!.Detail, StringComparison.Ordinal);
        var reset = report.Find("probe.reset")!;
        Assert.Equal(ConformanceVerdict.Fail, reset.Verdict);
        Assert.Contains("after a reset in STOP GET shows STOP", reset.Detail, StringComparison.Ordinal);
        // Rows from RESUMING are left by loading the device's own saved stream; every other rule conforms.
        Assert.Equal(["probe.reset"], report.Results.Where(r => r.Verdict == ConformanceVerdict.Fail).Select(r => r.Rule));
        Assert.Equal(0, report.Blocked);
        Assert.Equal(VfioMigrationState.Running, sample.State);
    }

    [Fact]
    public async Task ProbeRestore_IsBlockedByProbeReset_WhenNothingReturnsTheDeviceToRunning()
    {
        using var sample = NewSample(SampleDeviceFaults.RefuseArc);
        await using var device = new NoResetDevice(new InProcessMigrationDevice(sample, "sample:stuck"));
        using var cleanSample = NewSample();
        await using var cleanDevice = new InProcessMigrationDevice(cleanSample, "sample:clean");

        var stuck = await ConformanceChecker.RunAsync(device, Options(sample, ConformanceGroups.DirtyLogging), TestContext.Current.CancellationToken);
        var clean = await ConformanceChecker.RunAsync(cleanDevice, Options(cleanSample, ConformanceGroups.DirtyLogging), TestContext.Current.CancellationToken);

        // Stuck in STOP after the probe's reset: one FAIL (the reset), everything after it blocked by it.
        Assert.Equal(["probe.reset"], stuck.Results.Where(r => r.Verdict == ConformanceVerdict.Fail).Select(r => r.Rule));
        var restore = stuck.Find("probe.restore")!;
        Assert.Equal(ConformanceVerdict.Blocked, restore.Verdict);
        Assert.Equal("probe.reset", restore.BlockedBy);
        Assert.All(stuck.Results.Where(r => r.Group == ConformanceGroups.DirtyLogging), r => Assert.Equal("probe.reset", r.BlockedBy));
        Assert.Equal(ConformanceVerdict.Pass, clean.Find("probe.restore")!.Verdict);
        Assert.Equal(VfioMigrationState.Running, cleanSample.State);
    }

    [Fact]
    public async Task ResetRefusedInStopAndStopCopy_FailsProbeResetOnce_AndBlocksStaleAfterReset()
    {
        using var sample = NewSample();
        await using var device = new ResetRefusingDevice(new InProcessMigrationDevice(sample, "sample:lvfu"));

        var report = await ConformanceChecker.RunAsync(device, Options(sample, ConformanceGroups.Sessions), TestContext.Current.CancellationToken);

        var reset = report.Find("probe.reset")!;
        Assert.Equal(ConformanceVerdict.Fail, reset.Verdict);
        Assert.Contains("reset in STOP failed with", reset.Detail, StringComparison.Ordinal);
        var stale = report.Find("sessions.stale-after-reset")!;
        Assert.Equal(ConformanceVerdict.Blocked, stale.Verdict);
        Assert.Equal("probe.reset", stale.BlockedBy);
        Assert.Equal(1, report.Failed);
        Assert.Equal(VfioMigrationState.Running, sample.State);
    }

    [Fact]
    public async Task ReadSize_FailsOnce_AndLaterRulesReadWithTheSizeThatWorks()
    {
        using var sample = NewSample();
        await using var device = new ReadSizeDevice(new InProcessMigrationDevice(sample, "sample:64"), 64);

        var report = await ConformanceChecker.RunAsync(device, Options(sample), TestContext.Current.CancellationToken);

        var size = report.Find("probe.read-size")!;
        Assert.Equal(ConformanceVerdict.Fail, size.Verdict);
        Assert.Contains("reads of 64 B work", size.Detail, StringComparison.Ordinal);
        Assert.Equal(["probe.read-size"], report.Results.Where(r => r.Verdict == ConformanceVerdict.Fail).Select(r => r.Rule));
        Assert.Equal(0, report.Blocked);
    }

    [Fact]
    public async Task ReadSize_NoSizeAnswered_BlocksTheReadingGroups()
    {
        using var sample = NewSample();
        await using var device = new ReadSizeDevice(new InProcessMigrationDevice(sample, "sample:none"), 3);

        var report = await ConformanceChecker.RunAsync(device, Options(sample), TestContext.Current.CancellationToken);

        Assert.Equal(ConformanceVerdict.Fail, report.Find("probe.read-size")!.Verdict);
        foreach (var group in (string[])[ConformanceGroups.Sessions, ConformanceGroups.PreCopy, ConformanceGroups.RoundTrip])
            Assert.All(report.Results.Where(r => r.Group == group), r => Assert.Equal(ConformanceVerdict.Blocked, r.Verdict));
        Assert.Equal(ConformanceVerdict.Pass, report.Find("fsm.legal-arcs")!.Verdict);
    }

    [Fact]
    public async Task DeadDevice_FailsTheRuleItDiedIn_AndBlocksEveryLaterRule()
    {
        using var sample = NewSample();
        await using var device = new DyingDevice(new InProcessMigrationDevice(sample, "sample:dying"));

        var report = await ConformanceChecker.RunAsync(device, Options(sample), TestContext.Current.CancellationToken);

        Assert.NotNull(report.DeviceLost);
        Assert.Equal("dirty.zero-ranges", report.DeviceLost.Rule);
        var died = report.Find("dirty.zero-ranges")!;
        Assert.Equal(ConformanceVerdict.Fail, died.Verdict);
        Assert.Contains("ECONNRESET", died.Detail, StringComparison.Ordinal);
        Assert.Equal(1, report.Failed);
        int at = report.Results.ToList().IndexOf(died);
        var later = report.Results.Skip(at + 1).Where(r => r.Group != ConformanceGroups.Probe).ToList();
        Assert.NotEmpty(later);
        Assert.All(later, r => Assert.Equal(ConformanceVerdict.Blocked, r.Verdict));
        Assert.All(later, r => Assert.Equal("dirty.zero-ranges", r.BlockedBy));
        Assert.Equal(ConformanceVerdict.Blocked, report.Find("probe.restore")!.Verdict);
        Assert.Equal(ConformanceVerdict.Pass, report.Find("round-trip.resume")!.Verdict);
    }

    [Fact]
    public async Task Robustness_RunsTheTransportProbe_OrIsSkippedWithAReason()
    {
        using var sample = NewSample();
        await using var plain = new InProcessMigrationDevice(sample, "sample:plain");
        await using var probing = new ProbingDevice(new InProcessMigrationDevice(sample, "sample:probing"),
            new ConformanceResult(ConformanceGroups.Robustness, "robustness.oversized-message", "vfio-user.md §2", ConformanceVerdict.Fail, "accepted a 1 GiB header"),
            new ConformanceResult(ConformanceGroups.Robustness, "robustness.bad-type", "vfio-user.md §2", ConformanceVerdict.Pass, "rejected"));
        var ct = TestContext.Current.CancellationToken;

        var skipped = await ConformanceChecker.RunAsync(plain, Options(sample, ConformanceGroups.Robustness), ct);
        var probed = await ConformanceChecker.RunAsync(probing, Options(sample, ConformanceGroups.Robustness), ct);

        Assert.Equal(ConformanceVerdict.Skip, skipped.Find("robustness.raw-messages")!.Verdict);
        Assert.Contains("IRawMessageProbe", skipped.Find("robustness.raw-messages")!.Detail, StringComparison.Ordinal);
        Assert.Equal(ConformanceVerdict.Fail, probed.Find("robustness.oversized-message")!.Verdict);
        Assert.Equal(ConformanceVerdict.Pass, probed.Find("robustness.bad-type")!.Verdict);
        Assert.Null(probed.Find("robustness.raw-messages"));
        Assert.Equal(1, probed.Failed);
    }

    [Fact]
    public async Task Device_IsLeftRunning_AfterAFaultyRun()
    {
        using var sample = NewSample(SampleDeviceFaults.RefuseArc | SampleDeviceFaults.ErrorSettable | SampleDeviceFaults.AcceptTruncated);
        await using var device = new InProcessMigrationDevice(sample, "sample:faulty");

        var report = await ConformanceChecker.RunAsync(device, Options(sample), TestContext.Current.CancellationToken);

        Assert.True(report.Failed > 0);
        Assert.Equal(VfioMigrationState.Running, sample.State);
        Assert.Equal(ConformanceVerdict.Pass, report.Find("probe.restore")!.Verdict);
    }

    [Fact]
    public async Task UnknownGroup_IsRejected()
    {
        using var sample = NewSample();
        await using var device = new InProcessMigrationDevice(sample, "sample:x");

        await Assert.ThrowsAsync<ArgumentException>(() => ConformanceChecker.RunAsync(device, new ConformanceOptions { Groups = ["nope"] }, TestContext.Current.CancellationToken));
    }

    [Fact]
    public async Task Report_SerializesToJson_WithVerdictNamesAndSummary()
    {
        var report = await CheckAsync(SampleDeviceFaults.BadEstimate | SampleDeviceFaults.SkipEnomsg);

        string json = Vfio.Cli.Commands.CheckCommand.ToJson(report);
        using var doc = JsonDocument.Parse(json);

        var root = doc.RootElement;
        Assert.Equal("sample:test", root.GetProperty("device").GetString());
        Assert.Equal("0x7", root.GetProperty("capabilities").GetString());
        Assert.Equal(report.Summary, root.GetProperty("summary").GetString());
        Assert.Equal(1, root.GetProperty("failed").GetInt32());
        var results = root.GetProperty("results").EnumerateArray().ToList();
        Assert.Equal(report.Results.Count, results.Count);
        var size = results.Single(r => r.GetProperty("rule").GetString() == "sessions.stop-copy-size");
        Assert.Equal("FAIL", size.GetProperty("verdict").GetString());
        Assert.Equal("§4.8", size.GetProperty("spec").GetString());
        var end = results.Single(r => r.GetProperty("rule").GetString() == "precopy.temporary-end");
        Assert.Equal("PASS", end.GetProperty("verdict").GetString());
        Assert.True(end.TryGetProperty("warning", out _));
    }
}
