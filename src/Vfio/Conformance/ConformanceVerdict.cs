using System.Text.Json.Serialization;

namespace Vfio.Conformance;

/// <summary>The outcome of one conformance rule.</summary>
public enum ConformanceVerdict
{
    /// <summary>The device behaved as the spec says (possibly with a warning, see <see cref="ConformanceResult.Warning"/>).</summary>
    [JsonStringEnumMemberName("PASS")]
    Pass,
    /// <summary>The device broke the rule.</summary>
    [JsonStringEnumMemberName("FAIL")]
    Fail,
    /// <summary>The rule was not evaluated; <see cref="ConformanceResult.Detail"/> says why. Never counted as a pass.</summary>
    [JsonStringEnumMemberName("SKIP")]
    Skip,
    /// <summary>
    /// The rule could not be evaluated because an earlier rule failed (or the device stopped answering there):
    /// its precondition could not be established. <see cref="ConformanceResult.BlockedBy"/> names that rule.
    /// Neither a pass nor a failure of its own.
    /// </summary>
    [JsonStringEnumMemberName("BLOCKED")]
    Blocked,
}
