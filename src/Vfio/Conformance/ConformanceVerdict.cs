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
}
