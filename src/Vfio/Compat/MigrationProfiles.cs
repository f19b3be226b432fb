using Vfio.Migration;

namespace Vfio.Compat;

/// <summary>Reads the parts of a <see cref="MigrationProfile"/> every transport shares.</summary>
internal static class MigrationProfiles
{
    /// <summary>
    /// The profile of <paramref name="device"/>: its capabilities (errors propagate), its MIG_DATA_SIZE (null when the
    /// device cannot say) and what the transport adds.
    /// </summary>
    public static async ValueTask<MigrationProfile> ReadAsync(IVfioMigrationDevice device, DeviceIdentity identity, IReadOnlyList<RegionProfile> regions, DeviceFormat? format, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(device);
        var caps = await device.GetCapabilitiesAsync(cancellationToken).ConfigureAwait(false);
        ulong? size;
        try
        {
            size = await device.GetStopCopySizeAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (VfioException)
        {
            size = null;
        }
        return new MigrationProfile
        {
            Name = device.Name,
            Identity = identity,
            Capabilities = caps,
            Regions = regions,
            StopCopySize = size,
            Format = format,
        };
    }

    /// <summary>The PCI ids at offsets 0x00, 0x02, 0x2c and 0x2e of config space (little-endian), when 0x30 bytes are given.</summary>
    public static DeviceIdentity WithPciIds(DeviceIdentity identity, ReadOnlySpan<byte> config)
    {
        if (config.Length < 0x30)
            return identity;
        static ushort U16(ReadOnlySpan<byte> b, int at) => System.Buffers.Binary.BinaryPrimitives.ReadUInt16LittleEndian(b[at..]);
        return identity with { VendorId = U16(config, 0), DeviceId = U16(config, 2), SubsystemVendorId = U16(config, 0x2c), SubsystemId = U16(config, 0x2e) };
    }
}
