using Vfio.Device;
using Vfio.Kernel;
using Vfio.Migration;

namespace Vfio.KernelTests;

/// <summary>Data fd lifecycle against the kernel (spec §4): new fd per session, stale fds, EOF, directions.</summary>
public sealed class DataFdTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task EachSavingSession_GetsANewFd_TheOldOneTurnsENODEV_AndTheStreamEndsWithEof()
    {
        await using var device = KernelRig.Open(KernelRig.Devices[0]);
        await device.ResetAsync(Ct);
        ulong size = device.Device.GetRegionInfo(0).Size;

        await using var first = (KernelMigrationDataStream?)await device.SetStateAsync(VfioMigrationState.StopCopy, Ct);
        Assert.NotNull(first);
        Assert.Equal(DataSessionKind.Saving, first!.Kind);
        var head = new byte[24];
        Assert.Equal(24, await first.ReadAsync(head, Ct));

        // Same state again: no new fd, the existing one continues.
        Assert.Null(await device.SetStateAsync(VfioMigrationState.StopCopy, Ct));

        await device.SetStateAsync(VfioMigrationState.Stop, Ct);
        var stale = await Assert.ThrowsAsync<VfioException>(async () => await first.ReadAsync(head, Ct));
        Assert.Equal(Errno.ENODEV, stale.Errno);
        Assert.True(first.IsFaulted);

        await using var second = (KernelMigrationDataStream?)await device.SetStateAsync(VfioMigrationState.StopCopy, Ct);
        Assert.NotNull(second);
        Assert.NotEqual(first.Fd, second!.Fd);
        var image = await MigrationHelpers.ReadToEndAsync(second, Ct);
        MigrationHelpers.CheckStreamFrame(image, size);
        Assert.Equal(0, await second.ReadAsync(head, Ct)); // EOF stays EOF
        Assert.Equal(0, await second.ReadAsync(head, Ct));

        await device.SetStateAsync(VfioMigrationState.Running, Ct);
        var after = await Assert.ThrowsAsync<VfioException>(async () => await second.ReadAsync(head, Ct));
        Assert.Equal(Errno.ENODEV, after.Errno); // a terminated fd never reports EOF again
    }

    [Fact]
    public async Task Reset_TerminatesTheSavingFd()
    {
        await using var device = KernelRig.Open(KernelRig.Devices[0]);
        await using var saving = await device.SetStateAsync(VfioMigrationState.StopCopy, Ct);
        await device.ResetAsync(Ct);
        Assert.Equal(VfioMigrationState.Running, await device.GetStateAsync(Ct));
        var e = await Assert.ThrowsAsync<VfioException>(async () => await saving!.ReadAsync(new byte[8], Ct));
        Assert.Equal(Errno.ENODEV, e.Errno);
    }

    [Fact]
    public async Task ClosingTheDevice_TerminatesItsDataFd_ButTheStreamObjectStaysSafe()
    {
        KernelMigrationDataStream? saving;
        var device = KernelRig.Open(KernelRig.Devices[0]);
        saving = (KernelMigrationDataStream?)await device.SetStateAsync(VfioMigrationState.StopCopy, Ct);
        await device.DisposeAsync();
        var e = await Assert.ThrowsAsync<VfioException>(async () => await saving!.ReadAsync(new byte[8], Ct));
        Assert.Equal(Errno.ENODEV, e.Errno);
        await saving!.DisposeAsync();
    }

    [Fact]
    public async Task WrongDirection_IsEBADF()
    {
        await using var device = KernelRig.Open(KernelRig.Devices[0]);
        await device.ResetAsync(Ct);
        await using (var saving = await device.SetStateAsync(VfioMigrationState.StopCopy, Ct))
        {
            var e = await Assert.ThrowsAsync<VfioException>(async () => await saving!.WriteAsync(new byte[8], Ct));
            Assert.Equal(Errno.EBADF, e.Errno);
        }
        await device.SetStateAsync(VfioMigrationState.Stop, Ct);
        await using var resuming = await device.SetStateAsync(VfioMigrationState.Resuming, Ct);
        Assert.Equal(DataSessionKind.Resuming, resuming!.Kind);
        var r = await Assert.ThrowsAsync<VfioException>(async () => await resuming.ReadAsync(new byte[8], Ct));
        Assert.Equal(Errno.EBADF, r.Errno);
        await device.ResetAsync(Ct); // abandoning RESUMING needs a reset
    }

    [Fact]
    public async Task PrecopyInfo_InStopCopy_IsENOTTYOn61_EINVALOn62()
    {
        // 6.1 has no VFIO_MIG_GET_PRECOPY_INFO, so the driver's data fd has no ioctl method there; on 6.2+
        // it has one, which answers EINVAL outside PRE_COPY (spec §4.6).
        await using var device = KernelRig.Open(KernelRig.Devices[0]);
        await device.ResetAsync(Ct);
        await using var saving = await device.SetStateAsync(VfioMigrationState.StopCopy, Ct);
        var e = await Assert.ThrowsAsync<VfioException>(async () => await saving!.GetPrecopyInfoAsync(Ct));
        Assert.Equal(KernelRig.HasPreCopy ? Errno.EINVAL : Errno.ENOTTY, e.Errno);
        Assert.Equal(24 + 8, await saving!.ReadAsync(new byte[32], Ct)); // not poisoned
    }

    [Fact]
    public async Task ResumingBeyondTheImageSize_IsENOMEM_AndPoisonsTheStream()
    {
        await using var device = KernelRig.Open(KernelRig.Devices[0]);
        await device.ResetAsync(Ct);
        ulong size = device.Device.GetRegionInfo(0).Size;
        await device.SetStateAsync(VfioMigrationState.Stop, Ct);
        await using var resuming = (KernelMigrationDataStream?)await device.SetStateAsync(VfioMigrationState.Resuming, Ct);
        var e = await Assert.ThrowsAsync<VfioException>(async () => await resuming!.WriteAsync(new byte[size + 33], Ct));
        Assert.Equal(Errno.ENOMEM, e.Errno);
        Assert.True(resuming!.IsFaulted);
        await device.ResetAsync(Ct);
    }
}
