namespace Vfio.Compat;

/// <summary>One reason a source device cannot migrate to a destination device, or one note that does not block it.</summary>
/// <param name="Code">A stable short name, e.g. <c>caps.pre_copy</c>, <c>pci.device</c>, <c>format.version</c>.</param>
/// <param name="Message">Plain words naming both values.</param>
public sealed record CompatibilityFinding(string Code, string Message);

/// <summary>The answer of <see cref="CompatibilityCheck.Check"/> for one device pair.</summary>
public sealed record CompatibilityReport
{
    /// <summary>The source's profile.</summary>
    public required MigrationProfile Source { get; init; }

    /// <summary>The destination's profile.</summary>
    public required MigrationProfile Destination { get; init; }

    /// <summary>Every reason the migration would fail; empty when compatible.</summary>
    public IReadOnlyList<CompatibilityFinding> Reasons { get; init; } = [];

    /// <summary>Differences and gaps that do not block the migration (e.g. another driver version, no format).</summary>
    public IReadOnlyList<CompatibilityFinding> Notes { get; init; } = [];

    /// <summary>True when there is no reason.</summary>
    public bool Compatible => Reasons.Count == 0;
}
