using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Vfio.User.Protocol;

/// <summary>The JSON document in a VERSION payload: <c>{"capabilities": {...}}</c> (spec §4.2).</summary>
internal sealed class VersionDocument
{
    /// <summary>The capabilities object.</summary>
    [JsonPropertyName("capabilities")]
    public VersionCapabilities? Capabilities { get; set; }
}

/// <summary>Capability keys. Absent = null = the spec default.</summary>
public sealed class VersionCapabilities
{
    /// <summary>Most fds the sender can receive per message (default 1).</summary>
    [JsonPropertyName("max_msg_fds")]
    public long? MaxMessageFds { get; set; }

    /// <summary>Largest data count the sender can receive (default 1 MiB).</summary>
    [JsonPropertyName("max_data_xfer_size")]
    public long? MaxDataTransferSize { get; set; }

    /// <summary>Max simultaneous DMA maps (default 65535).</summary>
    [JsonPropertyName("max_dma_maps")]
    public long? MaxDmaMaps { get; set; }

    /// <summary>OR of supported DMA page sizes (default 4096).</summary>
    [JsonPropertyName("pgsizes")]
    public long? PageSizes { get; set; }

    /// <summary>Legacy migration object; pgsize must be 4096.</summary>
    [JsonPropertyName("migration")]
    public MigrationCapability? Migration { get; set; }

    /// <summary>Twin-socket request/answer.</summary>
    [JsonPropertyName("twin_socket")]
    public TwinSocketCapability? TwinSocket { get; set; }

    /// <summary>REGION_WRITE_MULTI support (we never advertise it).</summary>
    [JsonPropertyName("write_multiple")]
    public bool? WriteMultiple { get; set; }
}

/// <summary>The <c>migration</c> capability object.</summary>
public sealed class MigrationCapability
{
    /// <summary>Dirty bitmap page size.</summary>
    [JsonPropertyName("pgsize")]
    public long? PageSize { get; set; }

    /// <summary>QEMU's max bitmap size.</summary>
    [JsonPropertyName("max_bitmap_size")]
    public long? MaxBitmapSize { get; set; }
}

/// <summary>The <c>twin_socket</c> capability object.</summary>
public sealed class TwinSocketCapability
{
    /// <summary>Whether twin socket is wanted (client) or enabled (server).</summary>
    [JsonPropertyName("supported")]
    public bool? Supported { get; set; }

    /// <summary>Index of the twin socket fd in the VERSION reply.</summary>
    [JsonPropertyName("fd_index")]
    public long? FdIndex { get; set; }
}

/// <summary>System.Text.Json source generation for the VERSION JSON.</summary>
[JsonSourceGenerationOptions(DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull, NumberHandling = JsonNumberHandling.Strict)]
[JsonSerializable(typeof(VersionDocument))]
internal sealed partial class VfioUserJsonContext : JsonSerializerContext
{
}

/// <summary>VERSION payload: <c>u16 major, u16 minor, char json[] (NUL-terminated)</c>.</summary>
internal readonly record struct VersionPayload(ushort Major, ushort Minor, VersionCapabilities? Capabilities)
{
    /// <summary>Encodes with NUL-terminated JSON (or no JSON when capabilities are null).</summary>
    public byte[] Encode()
    {
        byte[] json = Capabilities is null
            ? []
            : JsonSerializer.SerializeToUtf8Bytes(new VersionDocument { Capabilities = Capabilities }, VfioUserJsonContext.Default.VersionDocument);
        var buffer = new byte[4 + json.Length + (json.Length > 0 ? 1 : 0)];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt16LittleEndian(buffer, Major);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt16LittleEndian(buffer.AsSpan(2), Minor);
        json.CopyTo(buffer.AsSpan(4));
        return buffer;
    }

    /// <summary>Decodes and validates strictly (libvfio-user's rules, spec §4.2).</summary>
    /// <exception cref="VfioException">EINVAL with the reason.</exception>
    public static VersionPayload Decode(ReadOnlySpan<byte> payload)
    {
        const string op = "VERSION";
        if (payload.Length < 4)
            VfioException.Throw(Errno.EINVAL, op, $"payload of {payload.Length} bytes is shorter than 4");
        ushort major = System.Buffers.Binary.BinaryPrimitives.ReadUInt16LittleEndian(payload);
        ushort minor = System.Buffers.Binary.BinaryPrimitives.ReadUInt16LittleEndian(payload[2..]);
        var json = payload[4..];
        if (json.IsEmpty)
            return new VersionPayload(major, minor, null);
        if (json.Length > ProtocolLimits.MaxVersionJsonBytes)
            VfioException.Throw(Errno.EINVAL, op, $"JSON of {json.Length} bytes exceeds {ProtocolLimits.MaxVersionJsonBytes}");
        if (json[^1] != 0)
            VfioException.Throw(Errno.EINVAL, op, "the JSON is not NUL-terminated");
        json = json[..^1];
        if (json.IndexOf((byte)0) >= 0)
            VfioException.Throw(Errno.EINVAL, op, "the JSON contains a NUL before its end");
        VersionDocument? doc;
        try
        {
            doc = JsonSerializer.Deserialize(json, VfioUserJsonContext.Default.VersionDocument);
        }
        catch (JsonException ex)
        {
            throw new VfioException(Errno.EINVAL, op, $"bad capabilities JSON: {ex.Message}");
        }
        catch (InvalidOperationException ex)
        {
            throw new VfioException(Errno.EINVAL, op, $"bad capabilities JSON: {ex.Message}");
        }
        if (doc is null)
            VfioException.Throw(Errno.EINVAL, op, "the JSON is null, not an object");
        return new VersionPayload(major, minor, doc.Capabilities ?? new VersionCapabilities());
    }

    /// <summary>The JSON text (for diagnostics).</summary>
    public static string JsonText(ReadOnlySpan<byte> payload)
        => payload.Length <= 4 ? "" : Encoding.UTF8.GetString(payload[4..].TrimEnd((byte)0));
}
