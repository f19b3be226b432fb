namespace Vfio.Conformance;

/// <summary>The results of one <c>vfio-mig check</c> run.</summary>
public sealed class ConformanceReport
{
    /// <summary>Creates a report.</summary>
    public ConformanceReport(string device, string capabilities, IReadOnlyList<ConformanceResult> results)
    {
        Device = device;
        Capabilities = capabilities;
        Results = results ?? throw new ArgumentNullException(nameof(results));
    }

    /// <summary>The device's name.</summary>
    public string Device { get; }

    /// <summary>The capabilities as the spec writes them (e.g. <c>0x7</c>), or empty when the probe failed.</summary>
    public string Capabilities { get; }

    /// <summary>Every result, in run order.</summary>
    public IReadOnlyList<ConformanceResult> Results { get; }

    /// <summary>Rules that passed.</summary>
    public int Passed => Results.Count(r => r.Verdict == ConformanceVerdict.Pass);

    /// <summary>Rules that failed.</summary>
    public int Failed => Results.Count(r => r.Verdict == ConformanceVerdict.Fail);

    /// <summary>Rules that were skipped.</summary>
    public int Skipped => Results.Count(r => r.Verdict == ConformanceVerdict.Skip);

    /// <summary>The summary line: <c>N passed, M failed, K skipped</c>.</summary>
    public string Summary => $"{Passed} passed, {Failed} failed, {Skipped} skipped";

    /// <summary>The result of a rule, or null when it was not run.</summary>
    public ConformanceResult? Find(string ruleId) => Results.FirstOrDefault(r => r.Rule == ruleId);
}
