using System.Text.Json.Serialization;

namespace Vfio.Conformance;

/// <summary>
/// Source-generated JSON for <see cref="ConformanceReport"/> (<c>vfio-mig check --json</c>): snake_case keys,
/// verdicts as <c>"PASS"</c>/<c>"FAIL"</c>/<c>"SKIP"</c>/<c>"BLOCKED"</c>, absent optional fields omitted.
/// The schema is documented in docs/cli/check.md.
/// </summary>
[JsonSourceGenerationOptions(
    WriteIndented = true,
    PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower,
    UseStringEnumConverter = true,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(ConformanceReport))]
internal sealed partial class ConformanceJsonContext : JsonSerializerContext;
