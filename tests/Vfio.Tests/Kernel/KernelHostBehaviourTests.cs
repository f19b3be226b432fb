using System.Diagnostics;
using Vfio.Cli;
using Vfio.Device;
using Vfio.Interop;
using Vfio.Kernel;
using Vfio.Uapi;

namespace Vfio.Tests.Kernel;

/// <summary>
/// Kernel-backend behaviour that needs no VFIO device: errno mapping through real libc calls, the
/// data-fd stream over ordinary descriptors (files, a FIFO), sysfs discovery over a fake tree, and the
/// errors when /dev/vfio or the device is missing.
/// </summary>
public sealed class KernelHostBehaviourTests : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("vfio-kernel-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    private static SafeFdHandle OpenRaw(string path, int flags)
    {
        var fd = Interop.Interop.OpenHandle(path, flags | Interop.Interop.O_CLOEXEC);
        Assert.False(fd.IsInvalid, $"open {path}: {Interop.Interop.LastErrno}");
        return fd;
    }

    [Fact]
    public void CheckIo_MapsTheCallsErrno_ToVfioExceptionWithOperationAndPlainWords()
    {
        using var fd = Interop.Interop.OpenHandle(Path.Combine(_root, "missing"), Interop.Interop.O_RDWR);
        Assert.True(fd.IsInvalid);
        var e = Assert.Throws<VfioException>(() => Interop.Interop.CheckIo(-1, "open missing", errno => errno == Errno.ENOENT ? "explained" : null));
        Assert.Equal(Errno.ENOENT, e.Errno);
        Assert.Equal("open missing", e.Operation);
        Assert.StartsWith("ENOENT: open missing: ", e.Message, StringComparison.Ordinal);
        Assert.Contains("explained", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void CheckIo_PassesNonNegativeResultsThrough()
        => Assert.Equal(7, Interop.Interop.CheckIo(7, "anything"));

    [Fact]
    public unsafe void VfioIoctl_OnANonVfioFile_IsENOTTY()
    {
        using var fd = OpenRaw("/dev/null", Interop.Interop.O_RDWR);
        byte* call = stackalloc byte[16];
        int rc = Interop.Interop.Ioctl(fd, VfioIoctl.VFIO_DEVICE_FEATURE, call);
        Assert.Equal(-1, rc);
        Assert.Equal(Errno.ENOTTY, Interop.Interop.LastErrno);
    }

    [Fact]
    public void SafeFdHandle_ClosesOnce_AndZeroIsAValidDescriptor()
    {
        var fd = OpenRaw("/dev/null", Interop.Interop.O_RDONLY);
        int number = fd.Fd;
        Assert.True(number >= 0);
        fd.Dispose();
        Assert.True(fd.IsClosed);
        Assert.False(new SafeFdHandle(0, ownsHandle: false).IsInvalid);
        Assert.True(new SafeFdHandle().IsInvalid);
    }

    [Fact]
    public async Task Stream_ReadsBytes_ThenZeroAtEndOfFile()
    {
        string file = Path.Combine(_root, "saved");
        File.WriteAllBytes(file, [1, 2, 3, 4, 5]);
        await using var stream = new KernelMigrationDataStream(OpenRaw(file, Interop.Interop.O_RDONLY), DataSessionKind.Saving, "test");
        var buffer = new byte[3];
        Assert.Equal(3, await stream.ReadAsync(buffer, TestContext.Current.CancellationToken));
        Assert.Equal(new byte[] { 1, 2, 3 }, buffer);
        Assert.Equal(2, await stream.ReadAsync(buffer, TestContext.Current.CancellationToken));
        Assert.Equal(0, await stream.ReadAsync(buffer, TestContext.Current.CancellationToken));
        Assert.Equal(0, await stream.ReadAsync(buffer, TestContext.Current.CancellationToken));
        Assert.False(stream.IsFaulted);
    }

    [Fact]
    public async Task Stream_WritesEverything()
    {
        string file = Path.Combine(_root, "resumed");
        File.WriteAllBytes(file, []);
        var data = Enumerable.Range(0, 100_000).Select(i => (byte)i).ToArray();
        await using (var stream = new KernelMigrationDataStream(OpenRaw(file, Interop.Interop.O_WRONLY), DataSessionKind.Resuming, "test"))
            await stream.WriteAsync(data, TestContext.Current.CancellationToken);
        Assert.Equal(data, File.ReadAllBytes(file));
    }

    [Fact]
    public async Task Stream_AfterAnError_NeverTouchesTheFdAgain()
    {
        string file = Path.Combine(_root, "ro");
        File.WriteAllBytes(file, [9, 9, 9]);
        await using var stream = new KernelMigrationDataStream(OpenRaw(file, Interop.Interop.O_RDONLY), DataSessionKind.Saving, "test");
        var first = await Assert.ThrowsAsync<VfioException>(async () => await stream.WriteAsync(new byte[] { 1 }, TestContext.Current.CancellationToken));
        Assert.Equal(Errno.EBADF, first.Errno);
        Assert.True(stream.IsFaulted);
        // The fd would read fine, but the stream refuses: a failed data fd is not reused.
        var second = await Assert.ThrowsAsync<VfioException>(async () => await stream.ReadAsync(new byte[3], TestContext.Current.CancellationToken));
        Assert.Equal(Errno.EBADF, second.Errno);
        Assert.Contains("not used again", second.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Stream_Disposed_ThrowsObjectDisposed()
    {
        var stream = new KernelMigrationDataStream(OpenRaw("/dev/zero", Interop.Interop.O_RDONLY), DataSessionKind.Saving, "test");
        await stream.DisposeAsync();
        await Assert.ThrowsAsync<ObjectDisposedException>(async () => await stream.ReadAsync(new byte[1], TestContext.Current.CancellationToken));
    }

    [Fact]
    public async Task Stream_PrecopyInfoOnAFdWithoutTheIoctl_IsENOTTY_AndDoesNotPoison()
    {
        await using var stream = new KernelMigrationDataStream(OpenRaw("/dev/zero", Interop.Interop.O_RDONLY), DataSessionKind.Saving, "test");
        var e = await Assert.ThrowsAsync<VfioException>(async () => await stream.GetPrecopyInfoAsync(TestContext.Current.CancellationToken));
        Assert.Equal(Errno.ENOTTY, e.Errno);
        Assert.False(stream.IsFaulted);
        Assert.Equal(4, await stream.ReadAsync(new byte[4], TestContext.Current.CancellationToken));
    }

    [Fact]
    public async Task Stream_OnEAGAIN_PollsAndRetries()
    {
        string fifo = Path.Combine(_root, "fifo");
        using (var mk = Process.Start("mkfifo", fifo))
            await mk.WaitForExitAsync(TestContext.Current.CancellationToken);
        // O_RDWR on a FIFO never blocks in open. The fd is opened blocking: the stream itself must switch it to
        // O_NONBLOCK, or the read below would hang the test thread instead of returning a pending task.
        await using var stream = new KernelMigrationDataStream(OpenRaw(fifo, Interop.Interop.O_RDWR), DataSessionKind.Saving, "fifo");
        Assert.True(stream.IsNonBlocking);
        using var writer = OpenRaw(fifo, Interop.Interop.O_WRONLY | Interop.Interop.O_NONBLOCK);
        var read = stream.ReadAsync(new byte[16], TestContext.Current.CancellationToken).AsTask();
        await Task.Delay(150, TestContext.Current.CancellationToken);
        Assert.False(read.IsCompleted);
        WriteBytes(writer, [7, 8]);
        Assert.Equal(2, await read.WaitAsync(TimeSpan.FromSeconds(10), TestContext.Current.CancellationToken));
        Assert.False(stream.IsFaulted);
    }

    [Fact]
    public async Task Stream_WaitingForData_HonoursCancellation()
    {
        string fifo = Path.Combine(_root, "fifo2");
        using (var mk = Process.Start("mkfifo", fifo))
            await mk.WaitForExitAsync(TestContext.Current.CancellationToken);
        await using var stream = new KernelMigrationDataStream(OpenRaw(fifo, Interop.Interop.O_RDWR), DataSessionKind.Saving, "fifo");
        using var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(200));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => await stream.ReadAsync(new byte[16], cts.Token));
        Assert.False(stream.IsFaulted);
    }

    private static unsafe void WriteBytes(SafeFdHandle fd, byte[] data)
    {
        fixed (byte* p = data)
            Assert.Equal(data.Length, (int)Interop.Interop.Write(fd, p, (nuint)data.Length));
    }

    private (VfioHostPaths Paths, string Uuid) FakeSysfs(int group = 7)
    {
        string sys = Path.Combine(_root, "sys");
        string groups = Path.Combine(sys, "kernel", "iommu_groups", group.ToString(System.Globalization.CultureInfo.InvariantCulture));
        Directory.CreateDirectory(groups);
        const string uuid = "3b5c2f0e-6a0d-4c1e-9a51-0000000000a1";
        string mdev = Path.Combine(sys, "bus", "mdev", "devices", uuid);
        Directory.CreateDirectory(mdev);
        File.CreateSymbolicLink(Path.Combine(mdev, "iommu_group"), $"../../../../kernel/iommu_groups/{group}");
        Directory.CreateDirectory(Path.Combine(sys, "bus", "mdev", "drivers", "vfio_mig_test"));
        File.CreateSymbolicLink(Path.Combine(mdev, "driver"), "../../../../bus/mdev/drivers/vfio_mig_test");

        string pci = Path.Combine(sys, "bus", "pci", "devices");
        foreach (var (bdf, driver) in new[] { ("0000:01:00.0", "vfio-pci"), ("0000:02:00.0", "e1000e"), ("0000:03:00.1", "mlx5_vfio_pci") })
        {
            Directory.CreateDirectory(Path.Combine(pci, bdf));
            Directory.CreateDirectory(Path.Combine(sys, "bus", "pci", "drivers", driver));
            File.CreateSymbolicLink(Path.Combine(pci, bdf, "driver"), $"../../../../bus/pci/drivers/{driver}");
            File.CreateSymbolicLink(Path.Combine(pci, bdf, "iommu_group"), "../../../../kernel/iommu_groups/" + (bdf[6] - '0' + 20));
        }
        return (new VfioHostPaths(sys, Path.Combine(_root, "dev", "vfio")), uuid);
    }

    [Fact]
    public void Discover_ListsMdevs_AndPciDevicesBoundToVfioDrivers()
    {
        var (paths, uuid) = FakeSysfs();
        var found = VfioSysfs.Discover(paths);
        Assert.Equal(new[] { uuid, "0000:01:00.0", "0000:03:00.1" }, found.Select(e => e.Name));
        Assert.Equal(KernelDeviceBus.Mdev, found[0].Bus);
        Assert.Equal(7, found[0].IommuGroup);
        Assert.Equal("vfio_mig_test", found[0].Driver);
        Assert.Equal(21, found[1].IommuGroup);
        Assert.Equal("mlx5_vfio_pci", found[2].Driver);
    }

    [Theory]
    [InlineData("../../../kernel/iommu_groups/12", 12)]
    [InlineData("/sys/kernel/iommu_groups/0/", 0)]
    [InlineData("", null)]
    [InlineData("../iommu_groups/x", null)]
    public void ParseGroupLink_TakesTheLastComponent(string link, int? expected)
        => Assert.Equal(expected, VfioSysfs.ParseGroupLink(link));

    [Fact]
    public void Open_UnknownName_IsENOENT_NamingWhereItLooked()
    {
        var (paths, _) = FakeSysfs();
        var e = Assert.Throws<VfioException>(() => KernelVfioDevice.Open("no-such-device", paths));
        Assert.Equal(Errno.ENOENT, e.Errno);
        Assert.Contains("no device named 'no-such-device'", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Open_NameWithSlash_IsEINVAL()
    {
        var e = Assert.Throws<VfioException>(() => KernelVfioDevice.Open("../etc", VfioHostPaths.Default));
        Assert.Equal(Errno.EINVAL, e.Errno);
    }

    [Fact]
    public void Open_WhenDevVfioIsAbsent_IsENOENT_AndSaysToLoadTheModules()
    {
        var (paths, uuid) = FakeSysfs();
        var e = Assert.Throws<VfioException>(() => KernelVfioDevice.Open(uuid, paths));
        Assert.Equal(Errno.ENOENT, e.Errno);
        Assert.Contains(paths.Container, e.Message, StringComparison.Ordinal);
        Assert.Contains("modprobe", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Open_WhenTheContainerIsNotAVfioDevice_IsENOTTYFromGetApiVersion()
    {
        var (paths, uuid) = FakeSysfs();
        Directory.CreateDirectory(paths.DevVfio);
        File.WriteAllBytes(paths.Container, []);
        var e = Assert.Throws<VfioException>(() => KernelVfioDevice.Open(uuid, paths));
        Assert.Equal(Errno.ENOTTY, e.Errno);
        Assert.Equal("VFIO_GET_API_VERSION", e.Operation);
    }

    [Fact]
    public void Open_DeviceWithoutIommuGroup_IsENODEV()
    {
        var (paths, _) = FakeSysfs();
        Directory.CreateDirectory(Path.Combine(paths.Sysfs, "bus", "pci", "devices", "0000:09:00.0"));
        var e = Assert.Throws<VfioException>(() => KernelVfioDevice.Open("0000:09:00.0", paths));
        Assert.Equal(Errno.ENODEV, e.Errno);
        Assert.Contains("iommu_group", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task CliAddress_Vfio_OpensThroughTheKernelBackend()
    {
        // No such device on a host without VFIO (or with it): a clear ENOENT, not "transport not available".
        var address = DeviceAddress.Parse("vfio:00000000-0000-0000-0000-00000000dead");
        var e = await Assert.ThrowsAsync<VfioException>(async () => await address.OpenAsync(TestContext.Current.CancellationToken));
        Assert.Equal(Errno.ENOENT, e.Errno);
    }

    [Fact]
    public void Report_RendersRegionsCapsAndState()
    {
        var report = new KernelDeviceReport(
            new KernelDeviceEntry("u", KernelDeviceBus.Mdev, "/sys/bus/mdev/devices/u", 3, "vfio_mig_test"),
            3,
            new KernelDeviceInfo(KernelDeviceInfo.FlagReset | KernelDeviceInfo.FlagPlatform, 1, 0),
            [new KernelRegionInfo(0, KernelRegionInfo.FlagRead | KernelRegionInfo.FlagWrite, 65536, 0)],
            Vfio.Migration.VfioMigrationFlags.StopCopy | Vfio.Migration.VfioMigrationFlags.P2P,
            Vfio.Migration.VfioMigrationState.Running,
            null);
        string text = report.ToString();
        Assert.Contains("vfio:u (mdev, driver vfio_mig_test, iommu group 3)", text, StringComparison.Ordinal);
        Assert.Contains("region 0:     size 65536 (0x10000) at offset 0x0, rw-", text, StringComparison.Ordinal);
        Assert.Contains("caps 0x3", text, StringComparison.Ordinal);
        Assert.Contains("state:        RUNNING", text, StringComparison.Ordinal);
    }
}
