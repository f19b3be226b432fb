namespace Vfio.Conformance;

/// <summary>The results of one <c>vfio-mig check</c> run (its JSON form is documented in docs/cli/check.md).</summary>
public sealed class ConformanceReport
{
    /// <summary>The version of the JSON document (<c>schema_version</c>); raised only when a field changes meaning or goes away.</summary>
    public const int CurrentSchemaVersion = 2;

    /// <summary>Creates a report.</summary>
    public ConformanceReport(string device, string capabilities, IReadOnlyList<ConformanceResult> results, ConformanceDeviceLoss? deviceLost = null)
    {
        Device = device;
        Capabilities = capabilities;
        Results = results ?? throw new ArgumentNullException(nameof(results));
        DeviceLost = deviceLost;
    }

    /// <summary>The JSON schema version (<see cref="CurrentSchemaVersion"/>).</summary>
#pragma warning disable CA1822 // an instance property, so the JSON document carries it
    public int SchemaVersion => CurrentSchemaVersion;
#pragma warning restore CA1822

    /// <summary>The device's name.</summary>
    public string Device { get; }

    /// <summary>The capabilities as the spec writes them (e.g. <c>0x7</c>), or empty when the probe failed.</summary>
    public string Capabilities { get; }

    /// <summary>True when no rule failed (<c>vfio-mig check</c> exits 0).</summary>
    public bool Conformant => Failed == 0;

    /// <summary>Where the device stopped answering (connection lost), or null when it answered to the end.</summary>
    public ConformanceDeviceLoss? DeviceLost { get; }

    /// <summary>Every result, in run order.</summary>
    public IReadOnlyList<ConformanceResult> Results { get; }

    /// <summary>Rules that passed.</summary>
    public int Passed => Count(ConformanceVerdict.Pass);

    /// <summary>Rules that failed.</summary>
    public int Failed => Count(ConformanceVerdict.Fail);

    /// <summary>Rules that were skipped.</summary>
    public int Skipped => Count(ConformanceVerdict.Skip);

    /// <summary>Rules blocked by an earlier failure.</summary>
    public int Blocked => Count(ConformanceVerdict.Blocked);

    /// <summary>The summary line: <c>N passed, M failed, K skipped, B blocked</c>.</summary>
    public string Summary => $"{Passed} passed, {Failed} failed, {Skipped} skipped, {Blocked} blocked";

    /// <summary>The result of a rule, or null when it was not run.</summary>
    public ConformanceResult? Find(string ruleId) => Results.FirstOrDefault(r => r.Rule == ruleId);

    private int Count(ConformanceVerdict verdict) => Results.Count(r => r.Verdict == verdict);
}

/// <summary>The device stopped answering: the rule during which that happened and what was seen.</summary>
/// <param name="Rule">The rule that was running; it fails, and every later rule is blocked by it.</param>
/// <param name="Detail">The operation and the error (e.g. ECONNRESET on MIG_DATA_READ).</param>
public sealed record ConformanceDeviceLoss(string Rule, string Detail);
