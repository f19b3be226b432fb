using System.Security.Cryptography;

namespace Vfio.Migration;

/// <summary>
/// An optional capability of a device: its state can be read back and hashed, so a migration can be verified
/// (<c>vfio-mig migrate</c>, <c>send</c> and <c>receive</c> compare the SHA-256 of source and destination). A device
/// without it migrates unverified, with a note that says so. Callers test for the interface
/// (<c>device is IDeviceDigestSource</c>), never for a concrete transport, so a new transport that implements it
/// is verified like the others.
/// </summary>
internal interface IDeviceDigestSource
{
    /// <summary>What the digest covers: <see cref="DeviceDigests.Bar0Kind"/> (sample and vfio-user devices, which compare) or <see cref="DeviceDigests.KernelRegion0Kind"/>.</summary>
    string DigestKind { get; }

    /// <summary>The read-back area in words for notes (<c>BAR0</c>, <c>region 0</c>).</summary>
    string ReadBackName { get; }

    /// <summary>
    /// True when reading back is local and cheap (in process, a kernel fd); false when it costs a transfer over a
    /// connection (vfio-user REGION_READ), whose size is best asked while the device runs (spec §7.4).
    /// </summary>
    bool ReadsLocally { get; }

    /// <summary>The size in bytes of the state read back; null when this device offers none after all.</summary>
    /// <exception cref="VfioException">The device refused to say.</exception>
    ValueTask<ulong?> GetReadBackSizeAsync(CancellationToken cancellationToken);

    /// <summary>SHA-256 of the first <paramref name="size"/> bytes, read so that the device cannot change mid-read.</summary>
    /// <exception cref="VfioException">The device refused a read.</exception>
    ValueTask<byte[]> ComputeSha256Async(ulong size, CancellationToken cancellationToken);
}

/// <summary>The digest kinds and the read-back loop shared by the <see cref="IDeviceDigestSource"/> implementations.</summary>
internal static class DeviceDigests
{
    /// <summary>
    /// Kind of a sample device's digest and of a vfio-user device's: the bytes of BAR0. A sample device's state is
    /// exactly what <c>vfio-mig serve</c> exposes as BAR0, so the two compare.
    /// </summary>
    public const string Bar0Kind = "bar0";

    /// <summary>Kind of a kernel device's digest: region 0 read through the device fd.</summary>
    public const string KernelRegion0Kind = "kernel-region0";

    private const int ChunkBytes = 1 << 20;

    /// <summary>
    /// SHA-256 of <paramref name="size"/> bytes read in 1 MiB chunks at increasing offsets. A RUNNING device is
    /// paused to STOP for the read, so it cannot change mid-read, and resumed; any other state is read as it is.
    /// </summary>
    public static async ValueTask<byte[]> Sha256WhilePausedAsync(IVfioMigrationDevice device, ulong size, Func<ulong, Memory<byte>, CancellationToken, ValueTask> readChunk, CancellationToken cancellationToken)
    {
        bool paused = await device.GetStateAsync(cancellationToken).ConfigureAwait(false) == VfioMigrationState.Running;
        if (paused)
            await device.SetStateAsync(VfioMigrationState.Stop, cancellationToken).ConfigureAwait(false);
        try
        {
            using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            var buffer = new byte[(int)Math.Min(ChunkBytes, size)];
            for (ulong at = 0; at < size; at += (ulong)buffer.Length)
            {
                int n = (int)Math.Min((ulong)buffer.Length, size - at);
                await readChunk(at, buffer.AsMemory(0, n), cancellationToken).ConfigureAwait(false);
                hash.AppendData(buffer, 0, n);
            }
            return hash.GetHashAndReset();
        }
        finally
        {
            if (paused)
                await device.SetStateAsync(VfioMigrationState.Running, cancellationToken).ConfigureAwait(false);
        }
    }
}
