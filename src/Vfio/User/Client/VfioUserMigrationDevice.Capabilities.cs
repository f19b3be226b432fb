using Vfio.Migration;

namespace Vfio.User.Client;

// Optional capabilities the CLI asks for by interface. Read-back for verification: BAR0 through REGION_READ, with a
// RUNNING device paused so it cannot change mid-read; the size is asked with GET_REGION_INFO, which a device in
// STOP/STOP_COPY may refuse (libvfio-user, spec §7.4). Region writes: REGION_WRITE (vfio-mig migrate --source-write).
// Pre-copy advice: a server without MIG_DATA_SIZE is libvfio-user, whose destination takes only the stop-copy stream.
public sealed partial class VfioUserMigrationDevice : IDeviceDigestSource, IDeviceRegionWriter, IPreCopyAdvice
{
    string IDeviceDigestSource.DigestKind => DeviceDigests.Bar0Kind;

    string IDeviceDigestSource.ReadBackName => "BAR0";

    bool IDeviceDigestSource.ReadsLocally => false;

    async ValueTask<ulong?> IDeviceDigestSource.GetReadBackSizeAsync(CancellationToken cancellationToken)
        => (await Client.GetRegionInfoAsync(0, cancellationToken).ConfigureAwait(false)).Size;

    ValueTask<byte[]> IDeviceDigestSource.ComputeSha256Async(ulong size, CancellationToken cancellationToken)
        => DeviceDigests.Sha256WhilePausedAsync(this, size, (at, chunk, ct) => new ValueTask(Client.RegionReadAsync(0, at, chunk, ct)), cancellationToken);

    ValueTask IDeviceRegionWriter.WriteRegionAsync(uint region, ulong offset, ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
        => new(Client.RegionWriteAsync(region, offset, data, cancellationToken));

    async ValueTask<string?> IPreCopyAdvice.ReasonToSkipPreCopyAsync(CancellationToken cancellationToken)
    {
        try
        {
            await GetStopCopySizeAsync(cancellationToken).ConfigureAwait(false);
            return null;
        }
        catch (VfioException ex) when (ex.Errno is Errno.EINVAL or Errno.ENOTTY or Errno.EOPNOTSUPP)
        {
            return $"pre-copy skipped: {Name} answers MIG_DATA_SIZE with {VfioException.NameOf(ex.Errno)} (libvfio-user), so there is no pre-copy estimate and its destination may take only the stop-copy stream; --precopy on forces it";
        }
    }
}
