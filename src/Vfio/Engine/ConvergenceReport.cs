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
/// <param name="ThresholdBytes">Bandwidth × downtime limit: the most that may be pending at switchover.</param>
/// <param name="MissingAcks">Devices whose destination had not yet acknowledged the initial data.</param>
public sealed record ConvergenceReport(int Rounds, TimeSpan Elapsed, long PendingBytes, double BandwidthBytesPerSecond, TimeSpan DowntimeLimit, long ThresholdBytes, int MissingAcks)
{
    /// <summary>The estimated downtime if the migration switched over now.</summary>
    public TimeSpan EstimatedDowntime => BandwidthBytesPerSecond > 0
        ? TimeSpan.FromSeconds(PendingBytes / BandwidthBytesPerSecond)
        : TimeSpan.MaxValue;

    /// <inheritdoc/>
    public override string ToString()
    {
        var c = CultureInfo.InvariantCulture;
        string estimate = BandwidthBytesPerSecond > 0 ? EstimatedDowntime.TotalMilliseconds.ToString("0", c) + " ms" : "unknown";
        string acks = MissingAcks > 0 ? string.Create(c, $"; {MissingAcks} device(s) still wait for the destination's switchover-ack") : "";
        return string.Create(c,
            $"pre-copy did not converge after {Rounds} rounds in {Elapsed.TotalSeconds:0.0} s: {PendingBytes} bytes pending, bandwidth {BandwidthBytesPerSecond / (1 << 20):0.0} MiB/s, so the downtime would be about {estimate} against a limit of {DowntimeLimit.TotalMilliseconds:0.###} ms (at most {ThresholdBytes} bytes may be pending){acks}. Raise the downtime limit, lower the device's dirty rate, or allow a forced switchover");
    }
}
