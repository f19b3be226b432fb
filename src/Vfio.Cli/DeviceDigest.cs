using Vfio.Migration;
using Vfio.Net;

namespace Vfio.Cli;

/// <summary>
/// Reads back a device's state as a SHA-256 where the device offers it (<see cref="IDeviceDigestSource"/>). The one
/// place that turns a read-back into a digest or a <c>verification skipped: …</c> note for <c>migrate</c>,
/// <c>send</c> and <c>receive</c>.
/// </summary>
internal static class DeviceDigest
{
    /// <inheritdoc cref="DeviceDigests.Bar0Kind"/>
    public const string Bar0Kind = DeviceDigests.Bar0Kind;

    /// <inheritdoc cref="DeviceDigests.KernelRegion0Kind"/>
    public const string KernelRegion0Kind = DeviceDigests.KernelRegion0Kind;

    /// <summary>
    /// The read-back size of a device whose read-back crosses a connection (vfio-user: asked while it runs, as a
    /// stopped server may refuse), else null.
    /// </summary>
    public static async ValueTask<ulong?> Bar0SizeAsync(IVfioMigrationDevice device, CancellationToken cancellationToken)
    {
        if (device is not IDeviceDigestSource { ReadsLocally: false } source)
            return null;
        try
        {
            return await source.GetReadBackSizeAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (VfioException)
        {
            return null;
        }
    }

    /// <summary>
    /// The SHA-256 of what the device reads back (<paramref name="knownSize"/> bytes when given, else the size it
    /// reports). A device without read-back, or a failed read: no digest, with a <c>verification skipped: …</c> note.
    /// </summary>
    public static async ValueTask<NetDigest> ComputeAsync(IVfioMigrationDevice device, CancellationToken cancellationToken, ulong? knownSize = null)
    {
        string none = $"verification skipped: {device.Name} offers no read-back of its state to this program";
        if (device is not IDeviceDigestSource source)
            return NetDigest.None(none);
        try
        {
            ulong? size = knownSize ?? await source.GetReadBackSizeAsync(cancellationToken).ConfigureAwait(false);
            if (size is null)
                return NetDigest.None(none);
            if (size == 0)
                return NetDigest.None($"verification skipped: {device.Name} has no {source.ReadBackName} to read back");
            return new NetDigest(await source.ComputeSha256Async(size.Value, cancellationToken).ConfigureAwait(false), source.DigestKind, "");
        }
        catch (VfioException e)
        {
            return NetDigest.None($"verification skipped: {device.Name} did not let its {source.ReadBackName} be read ({e.Message})");
        }
    }
}
