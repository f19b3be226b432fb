using System.Globalization;

namespace Vfio.Cli.Commands;

/// <summary>
/// What a <c>bench</c> command measured, for <c>--json</c>: per series the paired runs (ours and the raw reference
/// of the same bytes, alternating which ran first), their median ratio, and the headline against the target.
/// Keys are snake_case; rates are bytes per second, times seconds.
/// </summary>
internal sealed class BenchReport(string bench, long sizeBytes, int runs, double target)
{
    private readonly List<RawCopy> _references = [];
    private readonly List<BenchSeries> _series = [];
    private string _headlineSeries = "";
    private double _headline;

    /// <summary>Adds a series: <paramref name="name"/> is what ours moves, <paramref name="reference"/> the raw copy it is compared with.</summary>
    public BenchSeries Add(string name, string reference)
    {
        var series = new BenchSeries(name, reference);
        _series.Add(series);
        return series;
    }

    /// <summary>Records a raw reference the series were paired with (its tool and description go into the document).</summary>
    public void UsedReference(RawCopy reference) => _references.Add(reference);

    /// <summary>Sets the headline: the median ratio of one series.</summary>
    public void Headline(string series, double ratio)
    {
        _headlineSeries = series;
        _headline = ratio;
    }

    /// <summary>Writes the document (<see cref="BenchJson"/>) and a newline.</summary>
    public Task WriteAsync(TextWriter output)
    {
        CliJsonContext.Write(output, new BenchJson(bench, sizeBytes, runs, Environment.ProcessorCount, LoadAverage(),
            string.Join(",", _references.Select(r => r.Tool).Distinct()), [.. _references.Select(r => r.Description)], _headlineSeries, Math.Round(_headline, 4), target,
            _headline >= target, [.. _series.Select(s => s.ToJson())]), CliJsonContext.Default.BenchJson);
        return Task.CompletedTask;
    }

    /// <summary>The 1, 5 and 15 minute load averages: on a shared machine they say how much the figures may be disturbed.</summary>
    public static string LoadAverage()
    {
        try
        {
            var parts = File.ReadAllText("/proc/loadavg").Split(' ');
            return string.Join(' ', parts.Take(3));
        }
        catch (IOException)
        {
            return "";
        }
    }
}

/// <summary>One series of paired runs.</summary>
internal sealed class BenchSeries(string name, string reference)
{
    private readonly List<(long Bytes, double Seconds, double? Cpu, double RawSeconds, double? RawCpu)> _pairs = [];

    /// <summary>What our side moves (the series' key in the document).</summary>
    public string Name => name;

    /// <summary>Pairs recorded so far.</summary>
    public int Count => _pairs.Count;

    /// <summary>Extra figures printed beside the series (context, never the reference).</summary>
    public Dictionary<string, double> Context { get; } = [];

    /// <summary>Median of ours / raw over the pairs (0 without pairs).</summary>
    public double MedianRatio
    {
        get
        {
            if (_pairs.Count == 0)
                return 0;
            var ratios = _pairs.Select(p => p.RawSeconds / p.Seconds).Order().ToList();
            return ratios[ratios.Count / 2];
        }
    }

    /// <summary>
    /// Records one pair: the same byte count through our path and through the raw reference. A CPU time is null where
    /// the bench cannot measure it for the copy alone (it is then left out of the document, never written as 0).
    /// </summary>
    public void Pair(long bytes, double seconds, double? cpuSeconds, double rawSeconds, double? rawCpuSeconds)
        => _pairs.Add((bytes, seconds, cpuSeconds, rawSeconds, rawCpuSeconds));

    public BenchSeriesJson ToJson() => new(name, reference, Math.Round(MedianRatio, 4),
        [.. _pairs.Select(p => new BenchPairJson(p.Bytes, Math.Round(p.Seconds, 6), Round(p.Cpu), Math.Round(p.Bytes / p.Seconds),
            Math.Round(p.RawSeconds, 6), Round(p.RawCpu), Math.Round(p.Bytes / p.RawSeconds), Math.Round(p.RawSeconds / p.Seconds, 4)))],
        Context.ToDictionary(c => c.Key, c => Math.Round(c.Value, 2)));

    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"{name} vs {reference}: {MedianRatio:0.00}");

    private static double? Round(double? seconds) => seconds is { } s ? Math.Round(s, 6) : null;
}
