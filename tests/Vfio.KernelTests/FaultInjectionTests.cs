using System.Globalization;
using Vfio.Kernel;
using Vfio.Migration;

namespace Vfio.KernelTests;

/// <summary>
/// Arc failures injected through /sys/module/vfio_mig_test/parameters/{fail_arc,fail_errno}: the SET fails
/// with the injected errno, the device stays in the state the kernel reports (the last completed arc),
/// and the exception says which state that is (spec §3.1, §3.2).
/// </summary>
public sealed class FaultInjectionTests(Caps3Mdev fixture) : IClassFixture<Caps3Mdev>
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Theory]
    // request,   failing arc,            errno, state the device must be left in
    [InlineData("STOP_COPY", "STOP>STOP_COPY", 5, "STOP")]
    [InlineData("STOP_COPY", "RUNNING_P2P>STOP", 12, "RUNNING_P2P")]
    [InlineData("STOP_COPY", "RUNNING>RUNNING_P2P", 16, "RUNNING")]
    [InlineData("RESUMING", "STOP>RESUMING", 107, "STOP")]
    [InlineData("STOP", "RUNNING_P2P>STOP", 4, "RUNNING_P2P")]
    public async Task FailedArc_LeavesTheLastCompletedState_AndTheErrorSaysSo(string request, string arc, int errno, string expectedState)
    {
        await using var device = KernelRig.Open(fixture.Mdev.Name);
        await device.ResetAsync(Ct);
        KernelRig.WriteParam("fail_errno", errno.ToString(CultureInfo.InvariantCulture));
        KernelRig.WriteParam("fail_arc", arc);
        try
        {
            var e = await Assert.ThrowsAsync<VfioException>(async () => await device.SetStateAsync(KernelRig.Parse(request), Ct));
            Assert.Equal((Errno)errno, e.Errno);
            Assert.Contains($"now in {expectedState}", e.Message, StringComparison.Ordinal);
            Assert.Equal(KernelRig.Parse(expectedState), await device.GetStateAsync(Ct));
            Console.WriteLine(e.Message);
        }
        finally
        {
            KernelRig.WriteParam("fail_arc", "\n");
            KernelRig.WriteParam("fail_errno", "5");
        }

        // With the fault cleared the same request goes through from where the device was left.
        await using var stream = await device.SetStateAsync(KernelRig.Parse(request), Ct);
        Assert.Equal(KernelRig.Parse(request), await device.GetStateAsync(Ct));
        await device.ResetAsync(Ct);
    }

    [Fact]
    public async Task FailedResumingToStop_LeavesTheResumingFdUsable()
    {
        await using var device = KernelRig.Open(fixture.Mdev.Name);
        await device.ResetAsync(Ct);
        var image = await MigrationHelpers.SaveAsync(device, Ct);
        await using var resuming = await device.SetStateAsync(VfioMigrationState.Resuming, Ct);
        await resuming!.WriteAsync(image, Ct);
        KernelRig.WriteParam("fail_errno", "5");
        KernelRig.WriteParam("fail_arc", "RESUMING>STOP");
        try
        {
            var e = await Assert.ThrowsAsync<VfioException>(async () => await device.SetStateAsync(VfioMigrationState.Running, Ct));
            Assert.Equal(Errno.EIO, e.Errno);
            Assert.Contains("now in RESUMING", e.Message, StringComparison.Ordinal);
        }
        finally
        {
            KernelRig.WriteParam("fail_arc", "\n");
        }
        Assert.Null(await device.SetStateAsync(VfioMigrationState.Running, Ct));
        Assert.Equal(VfioMigrationState.Running, await device.GetStateAsync(Ct));
    }

    [Fact]
    public async Task FailToError_PutsTheDeviceInError_OnlyResetLeavesIt()
    {
        await using var device = KernelRig.Open(fixture.Mdev.Name);
        await device.ResetAsync(Ct);
        await using var saving = (KernelMigrationDataStream?)await device.SetStateAsync(VfioMigrationState.StopCopy, Ct);
        KernelRig.WriteParam("fail_errno", "5");
        KernelRig.WriteParam("fail_to_error", "Y");
        KernelRig.WriteParam("fail_arc", "STOP_COPY>STOP");
        try
        {
            var e = await Assert.ThrowsAsync<VfioException>(async () => await device.SetStateAsync(VfioMigrationState.Running, Ct));
            Assert.Equal(Errno.EIO, e.Errno);
            Assert.Contains("now in ERROR", e.Message, StringComparison.Ordinal);
        }
        finally
        {
            KernelRig.WriteParam("fail_arc", "\n");
            KernelRig.WriteParam("fail_to_error", "N");
        }
        Assert.Equal(VfioMigrationState.Error, await device.GetStateAsync(Ct));
        var stale = await Assert.ThrowsAsync<VfioException>(async () => await saving!.ReadAsync(new byte[8], Ct));
        Assert.Equal(Errno.ENODEV, stale.Errno);

        // ERROR>ERROR: the loop never runs, success without an fd.
        Assert.Null(await device.SetStateAsync(VfioMigrationState.Error, Ct));

        // ERROR>anything else: EINVAL, with a 6.1 core WARN that the rig is told to expect.
        File.WriteAllText("/dev/kmsg", "vmt-expect-warn-begin\n");
        try
        {
            var e = await Assert.ThrowsAsync<VfioException>(async () => await device.SetStateAsync(VfioMigrationState.Stop, Ct));
            Assert.Equal(Errno.EINVAL, e.Errno);
            Assert.Contains("now in ERROR", e.Message, StringComparison.Ordinal);
        }
        finally
        {
            File.WriteAllText("/dev/kmsg", "vmt-expect-warn-end\n");
        }

        await device.ResetAsync(Ct);
        Assert.Equal(VfioMigrationState.Running, await device.GetStateAsync(Ct));
    }
}
