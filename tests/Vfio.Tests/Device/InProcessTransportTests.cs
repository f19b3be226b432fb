using Vfio.Device;
using Vfio.Migration;
using Vfio.Sample;
using Vfio.Uapi;

namespace Vfio.Tests.Device;

// The user-side interface over the in-process transport: the same rules (spec §2.4, §4, §5) seen through
// IVfioMigrationDevice / IMigrationDataStream, as the engine and the CLI use them.
public class InProcessTransportTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static SampleDeviceOptions Small(int seed) => new() { SizeBytes = 128 << 10, Seed = seed };

    [Fact]
    public async Task SaveAndResume_ThroughTheUserSideInterface_ReproducesTheState()
    {
        await using var source = new InProcessMigrationDevice(new SampleDevice(Small(1)), "sample:a", ownsDevice: true);
        await using var destination = new InProcessMigrationDevice(new SampleDevice(Small(2)), "sample:b", ownsDevice: true);
        Assert.Equal("sample:a", source.Name);
        Assert.Equal((VfioMigrationFlags)0x7, await source.GetCapabilitiesAsync(Ct));
        Assert.Equal(VfioMigrationState.Running, await source.GetStateAsync(Ct));
        ulong estimate = await source.GetStopCopySizeAsync(Ct);

        var saving = await source.SetStateAsync(VfioMigrationState.PreCopy, Ct);
        Assert.NotNull(saving);
        Assert.Equal(DataSessionKind.Saving, saving.Kind);
        var info = await saving.GetPrecopyInfoAsync(Ct);
        Assert.True(info.InitialBytes > 0);
        var resuming = await destination.SetStateAsync(VfioMigrationState.Resuming, Ct);
        Assert.NotNull(resuming);
        Assert.Equal(DataSessionKind.Resuming, resuming.Kind);

        var buffer = new byte[10_000];
        long moved = 0;
        try
        {
            while (true)
            {
                int n = await saving.ReadAsync(buffer, Ct);
                await resuming.WriteAsync(buffer.AsMemory(0, n), Ct);
                moved += n;
            }
        }
        catch (VfioException e) when (e.Errno == Errno.ENOMSG)
        {
        }
        Assert.Null(await source.SetStateAsync(VfioMigrationState.StopCopy, Ct));
        int m;
        while ((m = await saving.ReadAsync(buffer, Ct)) > 0)
        {
            await resuming.WriteAsync(buffer.AsMemory(0, m), Ct);
            moved += m;
        }
        Assert.Equal((long)estimate, moved); // nothing was dirtied, so the whole stream is what STOP_COPY alone would send
        Assert.Null(await destination.SetStateAsync(VfioMigrationState.Running, Ct));
        Assert.Equal(
            ((SampleDevice)source.Device).ComputeSha256(),
            ((SampleDevice)destination.Device).ComputeSha256());
    }

    [Fact]
    public async Task Errors_SurfaceAsVfioException_WithTheDevicesErrno()
    {
        await using var d = new InProcessMigrationDevice(new SampleDevice(Small(1)), "sample:x", ownsDevice: true);
        Assert.Equal(Errno.EINVAL, (await Assert.ThrowsAsync<VfioException>(async () => await d.SetStateAsync(VfioMigrationState.Error, Ct))).Errno);
        await d.SetStateAsync(VfioMigrationState.Stop, Ct);
        await d.ResetAsync(Ct);
        Assert.Equal(VfioMigrationState.Running, await d.GetStateAsync(Ct));
        Assert.Equal(Errno.EINVAL, (await Assert.ThrowsAsync<VfioException>(async () =>
            await d.StartDmaLoggingAsync(4096, [], Ct))).Errno);
    }

    [Fact]
    public async Task DmaLogging_ThroughTheUserSideInterface_spec_5()
    {
        var device = new SampleDevice(Small(1));
        await using var d = new InProcessMigrationDevice(device, "sample:x", ownsDevice: true);
        Assert.Equal(4096ul, await d.StartDmaLoggingAsync(4096, [new VfioDmaLoggingRange(0, 128 << 10)], Ct));
        device.WriteState(4096 * 5, [1]);
        var bitmap = new ulong[1];
        await d.ReportDmaLoggingAsync(0, 128 << 10, 4096, bitmap, Ct);
        Assert.Equal(1ul << 5, bitmap[0]);
        await d.StopDmaLoggingAsync(Ct);
        Assert.Equal(Errno.EINVAL, (await Assert.ThrowsAsync<VfioException>(async () =>
            await d.ReportDmaLoggingAsync(0, 4096, 4096, bitmap, Ct))).Errno);
    }

    [Fact]
    public async Task DisposingTheAdapter_DisposesTheDeviceOnlyWhenItOwnsIt()
    {
        var device = new SampleDevice(Small(1));
        await new InProcessMigrationDevice(device, "borrowed").DisposeAsync();
        Assert.Null(device.SetState(VfioMigrationState.Stop)); // still usable
        await new InProcessMigrationDevice(device, "owned", ownsDevice: true).DisposeAsync();
        Assert.Throws<ObjectDisposedException>(() => device.SetState(VfioMigrationState.Running));
    }
}
