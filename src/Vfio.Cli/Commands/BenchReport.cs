using System.Globalization;
using System.Text.Json;

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

    /// <summary>Writes the document (indented) and a newline.</summary>
    public async Task WriteAsync(TextWriter output)
    {
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            w.WriteString("bench", bench);
            w.WriteNumber("size_bytes", sizeBytes);
            w.WriteNumber("runs", runs);
            w.WriteNumber("cpus", Environment.ProcessorCount);
            w.WriteString("load_average", LoadAverage());
            w.WriteString("raw_reference_tool", string.Join(",", _references.Select(r => r.Tool).Distinct()));
            w.WriteStartArray("raw_references");
            foreach (var r in _references)
                w.WriteStringValue(r.Description);
            w.WriteEndArray();
            w.WriteString("headline_series", _headlineSeries);
            w.WriteNumber("headline_ratio", Math.Round(_headline, 4));
            w.WriteNumber("target_ratio", target);
            w.WriteBoolean("target_met", _headline >= target);
            w.WriteStartArray("series");
            foreach (var s in _series)
                s.Write(w);
            w.WriteEndArray();
            w.WriteEndObject();
        }
        await output.WriteLineAsync(System.Text.Encoding.UTF8.GetString(buffer.ToArray())).ConfigureAwait(false);
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
    private readonly List<(long Bytes, double Seconds, double Cpu, double RawSeconds, double RawCpu)> _pairs = [];

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

    /// <summary>Records one pair: the same byte count through our path and through the raw reference.</summary>
    public void Pair(long bytes, double seconds, double cpuSeconds, double rawSeconds, double rawCpuSeconds)
        => _pairs.Add((bytes, seconds, cpuSeconds, rawSeconds, rawCpuSeconds));

    public void Write(Utf8JsonWriter w)
    {
        w.WriteStartObject();
        w.WriteString("name", name);
        w.WriteString("reference", reference);
        w.WriteNumber("median_ratio", Math.Round(MedianRatio, 4));
        w.WriteStartArray("pairs");
        foreach (var p in _pairs)
        {
            w.WriteStartObject();
            w.WriteNumber("bytes", p.Bytes);
            w.WriteNumber("seconds", Math.Round(p.Seconds, 6));
            w.WriteNumber("cpu_seconds", Math.Round(p.Cpu, 6));
            w.WriteNumber("bytes_per_second", Math.Round(p.Bytes / p.Seconds));
            w.WriteNumber("raw_seconds", Math.Round(p.RawSeconds, 6));
            w.WriteNumber("raw_cpu_seconds", Math.Round(p.RawCpu, 6));
            w.WriteNumber("raw_bytes_per_second", Math.Round(p.Bytes / p.RawSeconds));
            w.WriteNumber("ratio", Math.Round(p.RawSeconds / p.Seconds, 4));
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteStartObject("context");
        foreach (var (key, value) in Context)
            w.WriteNumber(key, Math.Round(value, 2));
        w.WriteEndObject();
        w.WriteEndObject();
    }

    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"{name} vs {reference}: {MedianRatio:0.00}");
}
