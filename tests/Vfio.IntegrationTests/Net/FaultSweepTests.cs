using System.Diagnostics;
using System.Globalization;

namespace Vfio.IntegrationTests.Net;

/// <summary>
/// The fault sweep (docs/reliability.md): a small migration through a loopback fault proxy that cuts (FIN), resets
/// (RST), stalls past the idle timeout or flips one bit at every byte of the final exchange in both directions,
/// and at a stride elsewhere, with 1 and 4 channels, token and TLS. After each trial: never both running, the
/// state never lost, every held end resolved to exactly one running copy.
/// VFIO_MIG_SWEEP=full widens the tail and the stride (minutes, not for CI).
/// </summary>
public sealed class FaultSweepTests(ITestOutputHelper log)
{
    private static bool Full => Environment.GetEnvironmentVariable("VFIO_MIG_SWEEP") == "full";

    [Theory]
    [InlineData(1, false)]
    [InlineData(4, false)]
    [InlineData(1, true)]
    [InlineData(4, true)]
    public async Task EveryFault_AtEveryByteOfTheFinalExchange_ExactlyOneCopyRuns(int channels, bool tls)
    {
        var config = new SweepConfig(channels, tls);
        using var sweep = new FaultSweep(config);
        var reference = await sweep.ReferenceAsync();
        log.WriteLine($"{config}: bytes forward [{string.Join(", ", reference.Forward)}] (set-up [{string.Join(", ", reference.ForwardHandshake)}]), return [{string.Join(", ", reference.Return)}] (set-up [{string.Join(", ", reference.ReturnHandshake)}])");
        int tail = Full ? 4096 : TailBytes(tls);
        int stride = Full ? 256 : 4;
        // CI: every byte of the final exchange with 1 channel and a token; the other three configurations at every
        // 7th byte (a different byte for each fault kind). VFIO_MIG_SWEEP=full: every byte everywhere listed.
        int step = Full || (channels == 1 && !tls) ? 1 : 7;
        var plan = FaultSweep.Plan(reference, tail, Full ? tail : DataTailBytes(tls), stride, step);
        var clock = Stopwatch.StartNew();
        var outcomes = await sweep.RunAllAsync(plan, parallel: 4, parallelStalls: 48);
        string summary = FaultSweep.Summarize(config, outcomes, clock.Elapsed);
        log.WriteLine(summary);
        var bad = outcomes.Where(o => o.SplitBrain || o.Lost).ToList();
        foreach (var o in bad.Take(40))
            log.WriteLine($"  FAILED {o.Fault}: {o.Detail}");
        foreach (var g in bad.GroupBy(o => (o.Fault.Kind, o.Fault.Direction, o.SplitBrain)))
            log.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  {g.Count()} × {(g.Key.SplitBrain ? "split-brain" : "lost")} under {g.Key.Kind} {g.Key.Direction}"));
        Assert.True(bad.Count == 0, $"{summary}\n" + string.Join('\n', bad.Take(10).Select(o => $"{o.Fault}: {o.Detail}")));
    }

    // The final frames: End and the commit exchange, DataEnd and Bye forward; all of it fits in this many bytes.
    private static int TailBytes(bool tls) => tls ? 400 : 240;

    // A data connection ends with its last segment's trailer and DataEnd (28 bytes; a TLS record more).
    private static int DataTailBytes(bool tls) => tls ? 96 : 48;
}
