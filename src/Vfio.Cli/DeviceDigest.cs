using Vfio.Cli.Commands;
using Vfio.Migration;
using Vfio.Sample;
using Vfio.User.Client;

namespace Vfio.Cli;

/// <summary>Reads back a device's whole state as a SHA-256 where the transport allows it.</summary>
internal static class DeviceDigest
{
    /// <summary>BAR0 size of a vfio-user device (asked while it runs: a stopped server may refuse), else null.</summary>
    public static async ValueTask<ulong?> Bar0SizeAsync(IVfioMigrationDevice device, CancellationToken cancellationToken)
    {
        if (device is not VfioUserMigrationDevice user)
            return null;
        try
        {
            return (await user.Client.GetRegionInfoAsync(0, cancellationToken).ConfigureAwait(false)).Size;
        }
        catch (VfioException)
        {
            return null;
        }
    }

    /// <summary>
    /// Sample devices: SHA-256 of the state. vfio-user devices: SHA-256 of BAR0 through REGION_READ (a RUNNING
    /// device is paused to STOP for the read and resumed). Others: empty with a note why.
    /// </summary>
    public static async ValueTask<(byte[] Digest, string Note)> ComputeAsync(IVfioMigrationDevice device, CancellationToken cancellationToken, ulong? knownBar0Size = null)
    {
        switch (device)
        {
            case InProcessMigrationDevice { Device: SampleDevice sample }:
                return (sample.ComputeSha256(), "");
            case VfioUserMigrationDevice user:
                try
                {
                    ulong size = knownBar0Size ?? (await user.Client.GetRegionInfoAsync(0, cancellationToken).ConfigureAwait(false)).Size;
                    if (size == 0)
                        return ([], $"verification skipped: {device.Name} has no BAR0 to read back");
                    var state = await user.GetStateAsync(cancellationToken).ConfigureAwait(false);
                    bool paused = false;
                    if (state == VfioMigrationState.Running)
                    {
                        await user.SetStateAsync(VfioMigrationState.Stop, cancellationToken).ConfigureAwait(false);
                        paused = true;
                    }
                    try
                    {
                        string hex = await MigrateCommand.HashBar0Async(user.Client, size, cancellationToken).ConfigureAwait(false);
                        return (Convert.FromHexString(hex), "");
                    }
                    finally
                    {
                        if (paused)
                            await user.SetStateAsync(VfioMigrationState.Running, cancellationToken).ConfigureAwait(false);
                    }
                }
                catch (VfioException e)
                {
                    return ([], $"verification skipped: {device.Name} did not let its BAR0 be read ({e.Message})");
                }
            default:
                return ([], $"verification skipped: {device.Name} offers no read-back of its state to this program");
        }
    }
}
