using Vfio.Engine;
using Vfio.Migration;

namespace Vfio.Tests.Engine;

public class ConvergenceModelTests
{
    private static readonly TimeSpan Ms = TimeSpan.FromMilliseconds(1);

    // A model with 1 MiB reads, 1 ms per device call (one device, no P2P: 4 calls), a 1.5 ms return path
    // and a 0.5 ms hand-over allowance: fixed cost 6 ms.
    private static ConvergenceModel Model(double limitMs, double callMs = 1, double returnMs = 1.5)
    {
        var model = new ConvergenceModel(TimeSpan.FromMilliseconds(limitMs), 1 << 20, TimeSpan.FromMilliseconds(0.5));
        model.SetCallCosts([TimeSpan.FromMilliseconds(callMs)], p2p: false);
        model.SetReturnPathCost(TimeSpan.FromMilliseconds(returnMs));
        return model;
    }

    // 1000 MiB moved in 1 s: 1 MiB per ms.
    private static void MebibytePerMillisecond(ConvergenceModel model) => model.SetTransfer(1000L << 20, TimeSpan.FromSeconds(1));

    [Fact]
    public void FixedCost_IsTheSwitchoverCallsOfEveryDevicePlusTheReturnPath()
    {
        var model = new ConvergenceModel(TimeSpan.FromMilliseconds(300), 1 << 20);
        model.SetCallCosts([TimeSpan.FromMilliseconds(1), TimeSpan.FromMilliseconds(2)], p2p: true);
        model.SetReturnPathCost(TimeSpan.FromMilliseconds(5));

        Assert.Equal(6, ConvergenceModel.CallsPerDevice(p2p: true));
        Assert.Equal(4, ConvergenceModel.CallsPerDevice(p2p: false));
        Assert.Equal(TimeSpan.FromMilliseconds(2), model.CallCost);
        Assert.Equal(ConvergenceModel.DefaultHandOverAllowance, model.HandOverAllowance);
        Assert.Equal(TimeSpan.FromMilliseconds((1 + 2) * 6 + 5) + ConvergenceModel.DefaultHandOverAllowance, model.FixedCost);
    }

    [Fact]
    public void Estimate_AddsTheFixedCostToTheDataTime()
    {
        var model = Model(300);
        MebibytePerMillisecond(model);

        Assert.Equal(6 * Ms + 16 * Ms, model.EstimateDowntime(16 << 20));
        // Only what is left after the fixed cost may be spent on data: (20 - 6) ms at 1 MiB/ms.
        var tight = Model(20);
        MebibytePerMillisecond(tight);
        Assert.InRange(tight.ThresholdBytes, (14L << 20) - 1024, (14L << 20) + 1024);
    }

    [Fact]
    public void LimitBelowTheFixedCost_NeverSwitchesOver()
    {
        var model = Model(5);
        MebibytePerMillisecond(model);

        Assert.Equal(ConvergenceDecision.Continue, model.Decide(0));
        Assert.Equal(ConvergenceDecision.Continue, model.Decide(0));
        Assert.Equal(0, model.ThresholdBytes);
        Assert.False(model.IsWithinLimit(0));
    }

    [Fact]
    public void PendingCheaperThanTheFixedCost_SwitchesOverAtOnce()
    {
        var model = Model(300);
        MebibytePerMillisecond(model);

        // 1 MiB = 1 ms of data, within a quarter of the 6 ms fixed cost: another round cannot win anything worth its
        // time, first round or not.
        Assert.Equal(ConvergenceDecision.SwitchOver, model.Decide(1 << 20));
    }

    [Fact]
    public void PendingAboveAQuarterOfTheFixedCost_RunsAnotherRound()
    {
        var model = Model(300);
        MebibytePerMillisecond(model);

        // docs/engine.md, convergence: 4 MiB = 4 ms of data fits the limit and is below the 6 ms fixed cost, but a
        // round moves it while the device runs; the 1 MiB left after it is within a quarter of the fixed cost.
        Assert.Equal(ConvergenceDecision.Continue, model.Decide(4 << 20));
        Assert.Equal(ConvergenceDecision.SwitchOver, model.Decide(1 << 20));
    }

    [Fact]
    public void TinyDevice_ABandwidthFromAFewBytesNeverPredictsTheDowntime()
    {
        // A 96-byte device read 24 bytes at a time over a slow path: 96 bytes in about a second of rounds.
        // As a bandwidth that is 92 B/s and "1037 ms"; the model does not trust a sample that small.
        var model = Model(300, callMs: 0.05, returnMs: 0);
        model.SetTransfer(96, TimeSpan.FromMilliseconds(1037));

        Assert.False(model.BandwidthMeasured);
        Assert.Equal(0.05 * Ms, model.DataTime(96));
        Assert.True(model.IsWithinLimit(96));
        Assert.Equal(ConvergenceDecision.SwitchOver, model.Decide(96));
    }

    [Fact]
    public void UnmeasuredBandwidth_WithMuchPending_WaitsForAMeasurement()
    {
        var model = Model(300);
        model.SetTransfer(4096, TimeSpan.FromMilliseconds(1));

        Assert.Null(model.DataTime(64 << 20));
        Assert.Equal(ConvergenceDecision.Continue, model.Decide(64 << 20));
        var report = model.Report(3, TimeSpan.FromSeconds(1), 64 << 20, 0);
        Assert.False(report.BandwidthMeasured);
        Assert.Equal(TimeSpan.MaxValue, report.EstimatedDowntime);
        Assert.Contains("bandwidth not measured yet", report.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public void RoundsThatShrinkTheStopCopy_ContinueEvenWithinTheLimit_UntilTheyStop()
    {
        var model = Model(300);
        MebibytePerMillisecond(model);

        // 1 GiB at 256 MiB/s dirty: 256 MiB pending fits in 300 ms, but the next round halves it.
        Assert.Equal(ConvergenceDecision.Continue, model.Decide(256 << 20));
        Assert.Equal(ConvergenceDecision.Continue, model.Decide(128 << 20));
        Assert.Equal(ConvergenceDecision.Continue, model.Decide(64 << 20));
        // 60 MiB after 64: not shrinking (> 3/4), but one round's figure may be noise: one more round.
        Assert.Equal(ConvergenceDecision.Continue, model.Decide(60 << 20));
        // A round that shrinks again resets the count; two in a row that do not: switch over.
        Assert.Equal(ConvergenceDecision.Continue, model.Decide(32 << 20));
        Assert.Equal(ConvergenceDecision.Continue, model.Decide(30 << 20));
        Assert.Equal(ConvergenceDecision.SwitchOver, model.Decide(31 << 20));
    }

    [Fact]
    public void DowntimeLimit_IsHonouredWithTheFixedCost()
    {
        // 20 ms limit, 6 ms fixed: 16 MiB (16 ms of data) would take 22 ms, above the limit.
        var model = Model(20);
        MebibytePerMillisecond(model);

        Assert.Equal(ConvergenceDecision.Continue, model.Decide(16 << 20));
        Assert.False(model.IsWithinLimit(16 << 20));
        Assert.True(model.IsWithinLimit(14 << 20));
        var report = model.Report(64, TimeSpan.FromSeconds(2), 16 << 20, 0);
        Assert.Equal(22 * Ms, report.EstimatedDowntime);
        Assert.Contains("fixed switchover and start cost 6 ms", report.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task MeasureDevicesAsync_TimesGetStateOnEveryDevice_AndChangesNothing()
    {
        await using var devices = new EngineTestDevices(2, VfioMigrationFlags.StopCopy | VfioMigrationFlags.P2P | VfioMigrationFlags.PreCopy);
        var model = new ConvergenceModel(TimeSpan.FromMilliseconds(300), 1 << 20);

        await model.MeasureDevicesAsync(devices.Sources, p2p: true, TestContext.Current.CancellationToken);

        Assert.True(model.CallCost > TimeSpan.Zero);
        Assert.True(model.SwitchoverCallsCost >= model.CallCost * 6);
        Assert.All(devices.SourceDevices, d => Assert.Equal(VfioMigrationState.Running, d.State));
    }

    [Fact]
    public async Task Engine_TinyIdleDevice_SwitchesOverAfterOneRound()
    {
        await using var devices = new EngineTestDevices(1, VfioMigrationFlags.StopCopy | VfioMigrationFlags.PreCopy, size: 4096);

        // Without waiting for the switchover-ack (whose timing would add a round): the decision alone.
        var options = MigrationOptions.Default with { RequireSwitchoverAck = false };
        var stats = await MigrationEngine.MigrateAsync(devices.Sources, devices.Destinations, options, null, TestContext.Current.CancellationToken);

        Assert.Equal(1, stats.Rounds);
        Assert.Equal(devices.SourceDevices[0].ComputeSha256(), devices.DestinationDevices[0].ComputeSha256());
    }
}
