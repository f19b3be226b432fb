using System.Globalization;

namespace Vfio.Engine;

/// <summary>
/// Why pre-copy did not converge: after <see cref="Rounds"/> rounds the pending bytes were still above
/// what the measured bandwidth moves within the downtime limit, or switchover-acks were missing.
/// </summary>
/// <param name="Rounds">Pre-copy rounds done.</param>
/// <param name="Elapsed">Time spent in pre-copy.</param>
/// <param name="PendingBytes">Bytes the stop-copy phase would still have to move (sum over devices).</param>
/// <param name="BandwidthBytesPerSecond">Measured transfer bandwidth.</param>
/// <param name="DowntimeLimit">The allowed downtime.</param>
/// <param name="ThresholdBytes">Bandwidth × (downtime limit − fixed cost): the most that may be pending at switchover.</param>
/// <param name="MissingAcks">Devices whose destination had not yet acknowledged the initial data.</param>
public sealed record ConvergenceReport(int Rounds, TimeSpan Elapsed, long PendingBytes, double BandwidthBytesPerSecond, TimeSpan DowntimeLimit, long ThresholdBytes, int MissingAcks)
{
    /// <summary>The part of the downtime that does not depend on the pending bytes (device calls of the
    /// switchover and the start, one return-path round trip; see <see cref="ConvergenceModel"/>).</summary>
    public TimeSpan FixedCost { get; init; }

    /// <summary>True when enough bytes were measured for the bandwidth to predict a downtime.</summary>
    public bool BandwidthMeasured { get; init; } = true;

    /// <summary>The model's estimate, when it made one; otherwise derived from the bandwidth.</summary>
    public TimeSpan? Estimate { get; init; }

    /// <summary>The estimated downtime if the migration switched over now (<see cref="TimeSpan.MaxValue"/>: unknown).</summary>
    public TimeSpan EstimatedDowntime => Estimate
        ?? (BandwidthMeasured && BandwidthBytesPerSecond > 0
            ? FixedCost + TimeSpan.FromSeconds(PendingBytes / BandwidthBytesPerSecond)
            : TimeSpan.MaxValue);

    /// <inheritdoc/>
    public override string ToString()
    {
        var c = CultureInfo.InvariantCulture;
        var downtime = EstimatedDowntime;
        string estimate = downtime != TimeSpan.MaxValue ? downtime.TotalMilliseconds.ToString("0.#", c) + " ms" : "unknown";
        string bandwidth = BandwidthMeasured
            ? string.Create(c, $"bandwidth {BandwidthBytesPerSecond / (1 << 20):0.0} MiB/s")
            : string.Create(c, $"bandwidth not measured yet (under {ConvergenceModel.MinimumSampleBytes >> 20} MiB moved)");
        string acks = MissingAcks > 0 ? string.Create(c, $"; {MissingAcks} device(s) still wait for the destination's switchover-ack") : "";
        return string.Create(c,
            $"pre-copy did not converge after {Rounds} rounds in {Elapsed.TotalSeconds:0.0} s: {PendingBytes} bytes pending, {bandwidth}, fixed switchover and start cost {FixedCost.TotalMilliseconds:0.###} ms, so the downtime would be about {estimate} against a limit of {DowntimeLimit.TotalMilliseconds:0.###} ms (at most {ThresholdBytes} bytes may be pending){acks}. Raise the downtime limit, lower the device's dirty rate, or allow a forced switchover");
    }
}
