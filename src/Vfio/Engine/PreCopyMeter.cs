using System.Diagnostics;

namespace Vfio.Engine;

/// <summary>
/// The source's pre-copy rounds and bandwidth: bytes moved over the time spent reading and sending them (the
/// waits between rounds excluded), as convergence and progress use it.
/// </summary>
internal sealed class PreCopyMeter
{
    private long _roundStart; // timestamp while a round runs, else 0

    /// <summary>Rounds begun.</summary>
    public int Round { get; private set; }

    /// <summary>Bytes moved in finished rounds.</summary>
    public long MovedBytes { get; private set; }

    /// <summary>Time spent in finished rounds.</summary>
    public TimeSpan ActiveTime { get; private set; }

    /// <summary>Bytes per second so far (0 until something moved).</summary>
    public double BandwidthBytesPerSecond { get; private set; }

    public void BeginRound()
    {
        Round++;
        _roundStart = Stopwatch.GetTimestamp();
    }

    public void EndRound(long roundBytes)
    {
        ActiveTime += Stopwatch.GetElapsedTime(_roundStart);
        _roundStart = 0;
        MovedBytes += roundBytes;
        Update(0);
    }

    /// <summary>Updates the bandwidth with <paramref name="inRound"/> bytes of the running round.</summary>
    public void Update(long inRound)
    {
        var active = ActiveTime + (_roundStart != 0 ? Stopwatch.GetElapsedTime(_roundStart) : TimeSpan.Zero);
        long moved = MovedBytes + inRound;
        if (moved > 0 && active > TimeSpan.Zero)
            BandwidthBytesPerSecond = moved / active.TotalSeconds;
    }
}
