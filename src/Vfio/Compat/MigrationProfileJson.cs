using System.Text.Json;
using System.Text.Json.Serialization;

namespace Vfio.Compat;

/// <summary>
/// The profile as JSON: snake_case keys, absent fields omitted, unknown keys ignored (so a newer peer may add
/// fields). The payload of the migration stream's Profile frame and of <c>vfio-mig compat --json</c>.
/// </summary>
internal static class MigrationProfileJson
{
    /// <summary>The largest encoded profile a reader accepts (bytes): it fits the smallest frame payload a stream may declare.</summary>
    public const int MaxBytes = 4096;

    /// <summary>Encodes <paramref name="profile"/> as UTF-8 JSON.</summary>
    /// <exception cref="VfioException">EMSGSIZE when it exceeds <see cref="MaxBytes"/>.</exception>
    public static byte[] Encode(MigrationProfile profile)
    {
        var bytes = JsonSerializer.SerializeToUtf8Bytes(profile, MigrationProfileJsonContext.Default.MigrationProfile);
        return bytes.Length <= MaxBytes ? bytes
            : throw new VfioException(Errno.EMSGSIZE, "encode migration profile", $"the profile of {profile.Name} is {bytes.Length} bytes; at most {MaxBytes} fit a Profile frame");
    }

    /// <summary>Decodes a profile.</summary>
    /// <exception cref="VfioException">EMSGSIZE above <see cref="MaxBytes"/>; EPROTO when it is not a profile.</exception>
    public static MigrationProfile Decode(ReadOnlySpan<byte> utf8)
    {
        if (utf8.Length > MaxBytes)
            throw new VfioException(Errno.EMSGSIZE, "decode migration profile", $"{utf8.Length} bytes; at most {MaxBytes} are accepted");
        try
        {
            return JsonSerializer.Deserialize(utf8, MigrationProfileJsonContext.Default.MigrationProfile)
                ?? throw new VfioException(Errno.EPROTO, "decode migration profile", "the profile is JSON null");
        }
        catch (JsonException ex)
        {
            throw new VfioException(Errno.EPROTO, "decode migration profile", "not a valid profile: " + ex.Message);
        }
    }
}

/// <summary>Source-generated JSON of the compatibility types (snake_case).</summary>
[JsonSourceGenerationOptions(
    PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(MigrationProfile))]
[JsonSerializable(typeof(CompatibilityReport))]
internal sealed partial class MigrationProfileJsonContext : JsonSerializerContext;
