namespace Vfio.Conformance;

/// <summary>The verdict on one rule of the conformance check.</summary>
/// <param name="Group">The group (<see cref="ConformanceGroups"/>), e.g. <c>fsm</c>.</param>
/// <param name="Rule">The rule id, e.g. <c>fsm.rejections</c> (listed in docs/conformance.md).</param>
/// <param name="Spec">The spec section(s) the rule comes from, e.g. <c>§2.5</c>.</param>
/// <param name="Verdict">PASS, FAIL, SKIP or BLOCKED.</param>
/// <param name="Detail">What was checked or observed, or why the rule was skipped or blocked.</param>
public sealed record ConformanceResult(string Group, string Rule, string Spec, ConformanceVerdict Verdict, string Detail)
{
    /// <summary>A tolerated deviation on a passing rule (e.g. 0 instead of ENOMSG); fails the rule under strict mode.</summary>
    public string? Warning { get; init; }

    /// <summary>For <see cref="ConformanceVerdict.Blocked"/>: the failed rule whose failure (or the device's death) blocked this one.</summary>
    public string? BlockedBy { get; init; }
}
