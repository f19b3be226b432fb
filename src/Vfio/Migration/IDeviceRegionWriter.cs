namespace Vfio.Migration;

/// <summary>
/// An optional capability of a device: bytes can be written into one of its regions from outside (a vfio-user
/// device through REGION_WRITE), e.g. to give a source a known state before a migration. Test for the interface,
/// never for a concrete transport.
/// </summary>
internal interface IDeviceRegionWriter
{
    /// <summary>Writes <paramref name="data"/> at <paramref name="offset"/> of region <paramref name="region"/>.</summary>
    /// <exception cref="VfioException">The device refused the write.</exception>
    ValueTask WriteRegionAsync(uint region, ulong offset, ReadOnlyMemory<byte> data, CancellationToken cancellationToken);
}
