using System.Text.Json.Serialization;

namespace Vfio.Conformance;

/// <summary>Source-generated JSON for <see cref="ConformanceReport"/> (<c>vfio-mig check --json</c>).</summary>
[JsonSourceGenerationOptions(
    WriteIndented = true,
    PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase,
    UseStringEnumConverter = true,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(ConformanceReport))]
public sealed partial class ConformanceJsonContext : JsonSerializerContext;
