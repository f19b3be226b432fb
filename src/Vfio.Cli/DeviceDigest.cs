using System.Security.Cryptography;
using Vfio.Kernel;
using Vfio.Migration;
using Vfio.Net;
using Vfio.Sample;
using Vfio.User.Client;

namespace Vfio.Cli;

/// <summary>
/// Reads back a device's state as a SHA-256 where the transport allows it. The one place that hashes device
/// state for <c>migrate</c>, <c>send</c> and <c>receive</c>.
/// </summary>
internal static class DeviceDigest
{
    /// <summary>
    /// Kind of a sample device's digest and of a vfio-user device's: the bytes of BAR0. A sample device's state
    /// is exactly what <c>vfio-mig serve</c> exposes as BAR0, so the two compare.
    /// </summary>
    public const string Bar0Kind = "bar0";

    /// <summary>Kind of a kernel device's digest: region 0 read through the device fd.</summary>
    public const string KernelRegion0Kind = "kernel-region0";

    private const int ChunkSize = 1 << 20;

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
    /// Sample devices: SHA-256 of the state. vfio-user devices: SHA-256 of BAR0 through REGION_READ. Kernel
    /// devices: SHA-256 of region 0 through the device fd (the test driver's state; BAR0 of a PCI device). A
    /// RUNNING vfio-user or kernel device is paused to STOP for the read, so it cannot change mid-read, and
    /// resumed. Others, or a failed read: no digest, with a <c>verification skipped: …</c> note.
    /// </summary>
    public static async ValueTask<NetDigest> ComputeAsync(IVfioMigrationDevice device, CancellationToken cancellationToken, ulong? knownBar0Size = null)
    {
        switch (device)
        {
            case InProcessMigrationDevice { Device: SampleDevice sample }:
                return new NetDigest(sample.ComputeSha256(), Bar0Kind, "");
            case VfioUserMigrationDevice user:
                try
                {
                    ulong size = knownBar0Size ?? (await user.Client.GetRegionInfoAsync(0, cancellationToken).ConfigureAwait(false)).Size;
                    if (size == 0)
                        return NetDigest.None($"verification skipped: {device.Name} has no BAR0 to read back");
                    byte[] digest = await WhilePausedAsync(user, ct => HashAsync(size, (at, chunk) => new ValueTask(user.Client.RegionReadAsync(0, at, chunk, ct))), cancellationToken).ConfigureAwait(false);
                    return new NetDigest(digest, Bar0Kind, "");
                }
                catch (VfioException e)
                {
                    return NetDigest.None($"verification skipped: {device.Name} did not let its BAR0 be read ({e.Message})");
                }
            case KernelMigrationDevice kernel:
                try
                {
                    var region = kernel.Device.GetRegionInfo(0);
                    if (region.Size == 0)
                        return NetDigest.None($"verification skipped: {device.Name} has no region 0 to read back");
                    byte[] digest = await WhilePausedAsync(kernel, _ => HashAsync(region.Size, (at, chunk) =>
                    {
                        kernel.Device.ReadRegion(0, at, chunk.Span);
                        return ValueTask.CompletedTask;
                    }), cancellationToken).ConfigureAwait(false);
                    return new NetDigest(digest, KernelRegion0Kind, "");
                }
                catch (VfioException e)
                {
                    return NetDigest.None($"verification skipped: {device.Name} did not let its region 0 be read ({e.Message})");
                }
            default:
                return NetDigest.None($"verification skipped: {device.Name} offers no read-back of its state to this program");
        }
    }

    // Reads with a RUNNING device paused (STOP), then resumes it; a device in any other state is read as it is.
    private static async ValueTask<byte[]> WhilePausedAsync(IVfioMigrationDevice device, Func<CancellationToken, ValueTask<byte[]>> read, CancellationToken cancellationToken)
    {
        bool paused = await device.GetStateAsync(cancellationToken).ConfigureAwait(false) == VfioMigrationState.Running;
        if (paused)
            await device.SetStateAsync(VfioMigrationState.Stop, cancellationToken).ConfigureAwait(false);
        try
        {
            return await read(cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            if (paused)
                await device.SetStateAsync(VfioMigrationState.Running, cancellationToken).ConfigureAwait(false);
        }
    }

    // SHA-256 of size bytes, read in 1 MiB chunks at increasing offsets.
    private static async ValueTask<byte[]> HashAsync(ulong size, Func<ulong, Memory<byte>, ValueTask> readChunk)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var buffer = new byte[(int)Math.Min(ChunkSize, size)];
        for (ulong at = 0; at < size; at += (ulong)buffer.Length)
        {
            int n = (int)Math.Min((ulong)buffer.Length, size - at);
            await readChunk(at, buffer.AsMemory(0, n)).ConfigureAwait(false);
            hash.AppendData(buffer, 0, n);
        }
        return hash.GetHashAndReset();
    }
}
