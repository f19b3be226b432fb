using System.Diagnostics;
using Vfio.Migration;

namespace Vfio.Engine;

/// <summary>What the source does after a pre-copy round.</summary>
public enum ConvergenceDecision
{
    /// <summary>Run another round: the estimated downtime is above the limit, or rounds still shrink the stop-copy.</summary>
    Continue,

    /// <summary>Switch over: the estimated downtime is within the limit and another round would not make it smaller.</summary>
    SwitchOver,
}

/// <summary>
/// Decides when pre-copy may switch over. The downtime is estimated as a fixed cost plus the time to move
/// what is still pending:
/// <list type="bullet">
/// <item>the fixed cost is what the switchover and the start cost whatever the data: the device calls on
/// both sides, measured at setup as the fastest of a few <c>GET device_state</c> round trips per device
/// (the destination's devices are assumed as fast as the source's), times the calls the switchover and
/// the start make, plus a return-path round trip when the caller knows one
/// (<see cref="SetReturnPathCost"/>), plus an allowance for the engine's own hand-overs
/// (<see cref="HandOverAllowance"/>). The engine does not time its return path: the only round trip
/// before pre-copy, the wait for Ready, includes the destination's whole setup (seconds under load or
/// while code is compiled), which would make a 300 ms limit look unreachable;</item>
/// <item>the data time is pending bytes / measured pre-copy bandwidth, but only once at least
/// <see cref="MinimumSampleBytes"/> have been measured: a bandwidth taken from a few small reads says more
/// about the per-call cost than about the rate. Below that, pending bytes that fit in
/// <see cref="MinimumSampleBytes"/> cost one device call per read buffer.</item>
/// </list>
/// The source switches over when the estimate is within the limit and either the data time is at most
/// <see cref="EarlySwitchFraction"/> of the fixed cost (another round cannot win anything worth its time) or the last
/// <see cref="StallRounds"/> rounds stopped shrinking the pending bytes (each to at most
/// <see cref="ShrinkFactor"/> of what the round before left).
/// </summary>
public sealed class ConvergenceModel
{
    /// <summary>Bytes pre-copy must have moved before its bandwidth predicts a downtime.</summary>
    public const long MinimumSampleBytes = 1 << 20;

    /// <summary>A round counts as progress when it leaves at most this fraction of the previous round's pending bytes.</summary>
    public const double ShrinkFactor = 0.75;

    /// <summary>
    /// Pending data that takes at most this fraction of the fixed cost to move switches over at once: another round
    /// could take at most that much off the downtime. Above it rounds run while they shrink the pending bytes,
    /// because a round costs running time, not downtime. (At 1, a fixed cost measured at 3 ms on a slow machine let
    /// 3 ms of data into the downtime, doubling it.)
    /// </summary>
    public const double EarlySwitchFraction = 0.25;

    /// <summary>Rounds in a row that must fail to shrink the pending bytes before the source stops trying (one
    /// round's figure is noisy: the device dirties in bursts and the machine may be busy).</summary>
    public const int StallRounds = 2;

    /// <summary><c>GET device_state</c> round trips timed per device at setup; the fastest counts.</summary>
    public const int CallSamples = 3;

    /// <summary>The default <see cref="HandOverAllowance"/>: 1 ms.</summary>
    public static readonly TimeSpan DefaultHandOverAllowance = TimeSpan.FromMilliseconds(1);

    private readonly int _readSize;
    private long _previousPending = long.MaxValue;
    private int _stalled;
    private long _sampleBytes;
    private TimeSpan _sampleTime;

    /// <summary>Creates a model for one migration.</summary>
    /// <param name="downtimeLimit">The allowed downtime.</param>
    /// <param name="readSize">The most one device read moves (the engine's buffer size).</param>
    /// <param name="handOverAllowance">See <see cref="HandOverAllowance"/>; null: <see cref="DefaultHandOverAllowance"/>.</param>
    public ConvergenceModel(TimeSpan downtimeLimit, int readSize, TimeSpan? handOverAllowance = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(downtimeLimit, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfLessThan(readSize, 1);
        DowntimeLimit = downtimeLimit;
        _readSize = readSize;
        HandOverAllowance = handOverAllowance ?? DefaultHandOverAllowance;
        ArgumentOutOfRangeException.ThrowIfLessThan(HandOverAllowance, TimeSpan.Zero);
    }

    /// <summary>
    /// What the engine's own hand-overs between the switchover and <c>Complete</c> cost (frames through a
    /// pipe or a socket in both directions, task continuations on both sides): not measurable before the
    /// first switchover, so allowed for. With in-process devices a device call costs well under a
    /// microsecond and these hand-overs are the whole fixed cost.
    /// </summary>
    public TimeSpan HandOverAllowance { get; }

    /// <summary>The allowed downtime.</summary>
    public TimeSpan DowntimeLimit { get; }

    /// <summary>The slowest device's fastest measured call round trip.</summary>
    public TimeSpan CallCost { get; private set; }

    /// <summary>Device calls of all devices during the switchover and the destination's start.</summary>
    public TimeSpan SwitchoverCallsCost { get; private set; }

    /// <summary>One round trip source → destination → source, when the caller set one (default 0).</summary>
    public TimeSpan ReturnPathCost { get; private set; }

    /// <summary>The part of the downtime that does not depend on the pending bytes.</summary>
    public TimeSpan FixedCost => SwitchoverCallsCost + ReturnPathCost + HandOverAllowance;

    /// <summary>True once enough bytes were measured for the bandwidth to predict a downtime.</summary>
    public bool BandwidthMeasured => _sampleBytes >= MinimumSampleBytes && _sampleTime > TimeSpan.Zero;

    /// <summary>Measured pre-copy bandwidth in bytes per second (0 until anything moved).</summary>
    public double Bandwidth => _sampleTime > TimeSpan.Zero ? _sampleBytes / _sampleTime.TotalSeconds : 0;

    /// <summary>Device calls per device between the switchover and <c>Complete</c>: source P2P, STOP_COPY and the
    /// read that ends the stream; destination RESUMING→STOP, P2P and RUNNING.</summary>
    public static int CallsPerDevice(bool p2p) => p2p ? 6 : 4;

    /// <summary>Times <see cref="CallSamples"/> <c>GET device_state</c> calls per device (they change nothing) and
    /// records the fixed cost of the switchover's device calls.</summary>
    public async Task MeasureDevicesAsync(IReadOnlyList<IVfioMigrationDevice> devices, bool p2p, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(devices);
        var fastest = new TimeSpan[devices.Count];
        for (int i = 0; i < devices.Count; i++)
        {
            fastest[i] = TimeSpan.MaxValue;
            for (int s = 0; s < CallSamples; s++)
            {
                long start = Stopwatch.GetTimestamp();
                await devices[i].GetStateAsync(cancellationToken).ConfigureAwait(false);
                var took = Stopwatch.GetElapsedTime(start);
                if (took < fastest[i])
                    fastest[i] = took;
            }
        }
        SetCallCosts(fastest, p2p);
    }

    /// <summary>Records each device's call round trip (what <see cref="MeasureDevicesAsync"/> measures).</summary>
    public void SetCallCosts(IReadOnlyList<TimeSpan> perDevice, bool p2p)
    {
        ArgumentNullException.ThrowIfNull(perDevice);
        var sum = TimeSpan.Zero;
        var max = TimeSpan.Zero;
        foreach (var t in perDevice)
        {
            sum += t;
            if (t > max)
                max = t;
        }
        CallCost = max;
        SwitchoverCallsCost = sum * CallsPerDevice(p2p);
    }

    /// <summary>Records one return-path round trip.</summary>
    public void SetReturnPathCost(TimeSpan roundTrip)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(roundTrip, TimeSpan.Zero);
        ReturnPathCost = roundTrip;
    }

    /// <summary>Records everything pre-copy moved so far and the time spent reading and sending it.</summary>
    public void SetTransfer(long bytes, TimeSpan activeTime)
    {
        _sampleBytes = Math.Max(0, bytes);
        _sampleTime = activeTime > TimeSpan.Zero ? activeTime : TimeSpan.Zero;
    }

    /// <summary>Time to move <paramref name="pendingBytes"/>, or null when it cannot be told yet.</summary>
    public TimeSpan? DataTime(long pendingBytes)
    {
        if (pendingBytes <= 0)
            return TimeSpan.Zero;
        if (BandwidthMeasured)
            return TimeSpan.FromSeconds(pendingBytes / Bandwidth);
        if (pendingBytes <= MinimumSampleBytes)
            return CallCost * ((pendingBytes + _readSize - 1) / _readSize);
        return null;
    }

    /// <summary>Fixed cost plus data time, or null when the data time cannot be told yet.</summary>
    public TimeSpan? EstimateDowntime(long pendingBytes) => DataTime(pendingBytes) is { } data ? FixedCost + data : null;

    /// <summary>The most bytes that may be pending at switchover and stay within the limit (0 if none may).</summary>
    public long ThresholdBytes
    {
        get
        {
            var budget = DowntimeLimit - FixedCost;
            if (budget < TimeSpan.Zero)
                return 0;
            if (BandwidthMeasured)
                return (long)Math.Min(Bandwidth * budget.TotalSeconds, long.MaxValue / 2);
            return EstimateDowntime(MinimumSampleBytes) <= DowntimeLimit ? MinimumSampleBytes : 0;
        }
    }

    /// <summary>True when the estimated downtime for <paramref name="pendingBytes"/> is known and within the limit.</summary>
    public bool IsWithinLimit(long pendingBytes) => EstimateDowntime(pendingBytes) is { } estimate && estimate <= DowntimeLimit;

    /// <summary>Decides after a round with <paramref name="pendingBytes"/> still to move.</summary>
    public ConvergenceDecision Decide(long pendingBytes)
    {
        long previous = _previousPending;
        _previousPending = pendingBytes;
        if (!IsWithinLimit(pendingBytes))
            return ConvergenceDecision.Continue;
        if (pendingBytes <= 0 || DataTime(pendingBytes) <= FixedCost * EarlySwitchFraction)
            return ConvergenceDecision.SwitchOver;
        bool shrinking = previous == long.MaxValue || pendingBytes <= previous * ShrinkFactor;
        _stalled = shrinking ? 0 : _stalled + 1;
        return _stalled >= StallRounds ? ConvergenceDecision.SwitchOver : ConvergenceDecision.Continue;
    }

    /// <summary>The figures behind a non-convergence, for the error and the caller.</summary>
    public ConvergenceReport Report(int rounds, TimeSpan elapsed, long pendingBytes, int missingAcks)
        => new(rounds, elapsed, pendingBytes, Bandwidth, DowntimeLimit, ThresholdBytes, missingAcks)
        {
            FixedCost = FixedCost,
            BandwidthMeasured = BandwidthMeasured,
            Estimate = EstimateDowntime(pendingBytes),
        };
}
