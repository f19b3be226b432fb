using System.Text.Json.Serialization;

namespace Vfio.Diagnostics;

/// <summary>Source-generated JSON for flight records: one compact <see cref="FlightEvent"/> per line, snake_case, absent fields omitted.</summary>
[JsonSourceGenerationOptions(
    PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(FlightEvent))]
internal sealed partial class FlightRecordJsonContext : JsonSerializerContext;
