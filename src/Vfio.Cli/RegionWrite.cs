using System.Buffers.Binary;
using System.Globalization;

namespace Vfio.Cli;

/// <summary>
/// <c>--source-write REGION:OFFSET:VALUE</c>: bytes written to a vfio-user source region (REGION_WRITE) in the
/// migration's own connection before the engine starts. VALUE is hex (<c>0a0b…</c>) or <c>u64=N</c> (8 bytes,
/// little-endian). It stands in for guest activity that a device's migration depends on: libvfio-user's
/// samples/server re-arms a timer from BAR0 on the destination's RUNNING and fails it for a time in the past
/// (spec §7.5, §11 step 4), and the sample exits when its client leaves, so no separate run can set it.
/// </summary>
internal sealed record RegionWrite(uint Region, ulong Offset, byte[] Data)
{
    /// <summary>Parses one value; EINVAL with the accepted form.</summary>
    public static RegionWrite Parse(string text)
    {
        var parts = text.Split(':', 3);
        if (parts.Length == 3
            && uint.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out uint region)
            && TryParseOffset(parts[1], out ulong offset)
            && TryParseValue(parts[2], out byte[] data))
        {
            return new RegionWrite(region, offset, data);
        }
        throw new VfioException(Errno.EINVAL, "parse --source-write", $"'{text}' is not REGION:OFFSET:VALUE (VALUE = hex bytes or u64=N), e.g. 0:0:u64=1800000000");
    }

    private static bool TryParseOffset(string text, out ulong offset)
        => text.StartsWith("0x", StringComparison.OrdinalIgnoreCase)
            ? ulong.TryParse(text.AsSpan(2), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out offset)
            : ulong.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out offset);

    private static bool TryParseValue(string text, out byte[] data)
    {
        data = [];
        if (text.StartsWith("u64=", StringComparison.Ordinal))
        {
            if (!long.TryParse(text.AsSpan(4), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long value))
                return false;
            data = new byte[8];
            BinaryPrimitives.WriteInt64LittleEndian(data, value);
            return true;
        }
        if (text.Length == 0 || text.Length % 2 != 0 || !text.All(Uri.IsHexDigit))
            return false;
        data = Convert.FromHexString(text);
        return true;
    }
}
