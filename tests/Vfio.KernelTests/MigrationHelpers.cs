using System.Buffers.Binary;
using Vfio.Kernel;
using Vfio.Migration;

namespace Vfio.KernelTests;

internal static class MigrationHelpers
{
    /// <summary>vfio_mig_test stream: 24-byte header (magic, version, flags, size), state, CRC-32, "TEND".</summary>
    public const ulong StreamMagic = 0x3154534D47494D56;
    public const uint StreamEnd = 0x444E4554;

    /// <summary>Drives the device to STOP_COPY, reads the whole stream to EOF, and returns it to RUNNING.</summary>
    public static async Task<byte[]> SaveAsync(KernelMigrationDevice device, CancellationToken ct)
    {
        byte[] image;
        await using (var saving = await device.SetStateAsync(VfioMigrationState.StopCopy, ct))
        {
            Assert.NotNull(saving);
            image = await ReadToEndAsync(saving!, ct);
            await device.SetStateAsync(VfioMigrationState.Running, ct);
        }
        return image;
    }

    public static async Task<byte[]> ReadToEndAsync(IMigrationDataStream stream, CancellationToken ct, int chunk = 4093)
    {
        using var all = new MemoryStream();
        var buffer = new byte[chunk];
        int n;
        while ((n = await stream.ReadAsync(buffer, ct)) > 0)
            all.Write(buffer, 0, n);
        return all.ToArray();
    }

    /// <summary>Opens a device and resets it (RUNNING, no data fd; vfio_mig_test also zeroes region 0).</summary>
    public static async Task<KernelMigrationDevice> OpenResetAsync(string name, CancellationToken ct)
    {
        var device = KernelRig.Open(name);
        await device.ResetAsync(ct);
        return device;
    }

    public static byte[] Pattern(int length, int seed)
    {
        var data = new byte[length];
        new Random(seed).NextBytes(data);
        return data;
    }

    public static byte[] ReadRegion(KernelMigrationDevice device)
    {
        var region = device.Device.GetRegionInfo(0);
        var data = new byte[region.Size];
        device.Device.ReadRegion(0, 0, data);
        return data;
    }

    public static void CheckStreamFrame(byte[] image, ulong stateSize)
    {
        Assert.Equal((long)(24 + stateSize + 8), image.LongLength);
        Assert.Equal(StreamMagic, BinaryPrimitives.ReadUInt64LittleEndian(image));
        Assert.Equal(1u, BinaryPrimitives.ReadUInt32LittleEndian(image.AsSpan(8)));
        Assert.Equal(stateSize, BinaryPrimitives.ReadUInt64LittleEndian(image.AsSpan(16)));
        Assert.Equal(StreamEnd, BinaryPrimitives.ReadUInt32LittleEndian(image.AsSpan(image.Length - 4)));
    }
}
