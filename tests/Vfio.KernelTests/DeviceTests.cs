using Vfio.Kernel;
using Vfio.Migration;
using Vfio.Uapi;

namespace Vfio.KernelTests;

/// <summary>Opening, info, regions, reset, DMA logging and MIG_DATA_SIZE on the rig's devices.</summary>
public sealed class DeviceTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public void Environment_NamesTwoDevicesThatExistInSysfs()
    {
        foreach (string name in KernelRig.Devices)
        {
            var entry = VfioSysfs.Find(name);
            Assert.Equal(KernelDeviceBus.Mdev, entry.Bus);
            Assert.NotNull(entry.IommuGroup);
        }
        var discovered = VfioSysfs.Discover().Select(e => e.Name).ToHashSet();
        Assert.All(KernelRig.Devices, d => Assert.Contains(d, discovered));
    }

    [Fact]
    public async Task Open_ReportsInfoRegionCapsAndRunning()
    {
        await using var device = KernelRig.Open(KernelRig.Devices[0]);
        Assert.True(device.Device.IommuType is 3 or 1);
        Assert.True(device.ProbeMigration());
        var report = device.Describe();
        Assert.True(report.Info.SupportsReset);
        Assert.Equal(1u, report.Info.NumRegions);
        var region = Assert.Single(report.Regions);
        Assert.Equal(ulong.Parse(KernelRig.ReadParam("state_size"), System.Globalization.CultureInfo.InvariantCulture), region.Size);
        Assert.Equal("rw-", region.Access);
        Assert.Equal(VfioMigrationFlags.StopCopy | VfioMigrationFlags.P2P, report.Capabilities);
        Assert.Equal(VfioMigrationState.Running, report.State);
        Console.WriteLine(report.ToString());
    }

    // docs/architecture.md, "Logging": the kernel backend logs with ids 400–499.
    [Fact]
    public async Task The_backend_logs_opening_each_set_a_refused_set_and_reset()
    {
        var log = new Vfio.TestSupport.RecordingLoggerFactory();
        await using (var device = KernelRig.Open(KernelRig.Devices[0], log))
        {
            Assert.Contains($"vfio:{KernelRig.Devices[0]}: opened through IOMMU group", log.Text(400), StringComparison.Ordinal);
            Assert.Null(device.SetState(VfioMigrationState.Stop));
            Assert.Contains("SET device_state STOP in", log.Text(401), StringComparison.Ordinal);
            // Spec §1.1 and §2.1: ERROR can never be requested; the kernel refuses and the failure is logged with its exception.
            var e = Assert.Throws<VfioException>(() => device.SetState(VfioMigrationState.Error));
            Assert.Same(e, log.Exception(402));
            device.Device.Reset();
            Assert.Contains(403, log.Ids());
            Assert.Equal(VfioMigrationState.Running, device.GetState());
        }
    }

    [Fact]
    public async Task Open_Twice_IsEBUSY_FromTheGroup()
    {
        await using var device = KernelRig.Open(KernelRig.Devices[0]);
        var e = Assert.Throws<VfioException>(() => KernelMigrationDevice.Open(KernelRig.Devices[0]));
        Assert.Equal(Errno.EBUSY, e.Errno);
        Assert.Contains("already open", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Region_WriteThenRead_RoundTrips_AndReset_ClearsIt()
    {
        await using var device = KernelRig.Open(KernelRig.Devices[0]);
        var region = device.Device.GetRegionInfo(0);
        var pattern = MigrationHelpers.Pattern(4096, 11);
        device.Device.WriteRegion(0, region.Size - 4096, pattern);
        var back = new byte[4096];
        device.Device.ReadRegion(0, region.Size - 4096, back);
        Assert.Equal(pattern, back);

        await device.SetStateAsync(VfioMigrationState.Stop, Ct);
        await device.ResetAsync(Ct);
        Assert.Equal(VfioMigrationState.Running, await device.GetStateAsync(Ct));
        device.Device.ReadRegion(0, region.Size - 4096, back);
        Assert.All(back, b => Assert.Equal(0, b));
    }

    [Fact]
    public async Task RegionInfo_ForAMissingIndex_IsEINVAL()
    {
        await using var device = KernelRig.Open(KernelRig.Devices[0]);
        var e = Assert.Throws<VfioException>(() => device.Device.GetRegionInfo(1));
        Assert.Equal(Errno.EINVAL, e.Errno);
    }

    [Fact]
    public async Task MigDataSize_IsTheStreamLengthOn62_AndRefusedOn61_AndSurfacedAsIs()
    {
        await using var device = KernelRig.Open(KernelRig.Devices[0]);
        if (KernelRig.HasPreCopy)
        {
            await device.ResetAsync(Ct);
            Assert.Equal(device.Device.GetRegionInfo(0).Size + 32, await device.GetStopCopySizeAsync(Ct));
            return;
        }
        // Feature 9 arrived in 6.2; a 6.1 core hands id 9 to the driver (which has no feature hook).
        var e = await Assert.ThrowsAsync<VfioException>(async () => await device.GetStopCopySizeAsync(Ct));
        Assert.True(e.Errno is Errno.ENOTTY or Errno.EINVAL, e.Message);
        Assert.Contains("MIG_DATA_SIZE", e.Message, StringComparison.Ordinal);
        Console.WriteLine("MIG_DATA_SIZE on this kernel: " + e.Message);
    }

    [Fact]
    public async Task PrecopyInfoV2OptIn_IsNotOfferedBeforeLinux71()
    {
        await using var device = KernelRig.Open(KernelRig.Devices[0]);
        Assert.False(device.TryEnablePrecopyInfoV2());
    }

    [Fact]
    public async Task DmaLogging_StartReportStop()
    {
        await using var device = KernelRig.Open(KernelRig.Devices[0]);
        ulong page = await device.StartDmaLoggingAsync(4096, [new VfioDmaLoggingRange(0x100000, 0x40000), new VfioDmaLoggingRange(0x0, 0x10000)], Ct);
        Assert.Equal(4096ul, page);
        try
        {
            var again = await Assert.ThrowsAsync<VfioException>(async () => await device.StartDmaLoggingAsync(4096, [new VfioDmaLoggingRange(0, 4096)], Ct));
            Assert.Equal(Errno.EBUSY, again.Errno);

            var bitmap = new ulong[1];
            await ExpectReportAsync(() => device.ReportDmaLoggingAsync(0x100000, 0x40000, 4096, bitmap, Ct));
            Assert.Equal(0ul, bitmap[0]);
        }
        finally
        {
            await device.StopDmaLoggingAsync(Ct);
        }
        var notStarted = await Assert.ThrowsAsync<VfioException>(async () => await device.ReportDmaLoggingAsync(0, 4096, 4096, new ulong[1], Ct));
        Assert.Equal(KernelRig.LacksDirtyWalker ? Errno.EOPNOTSUPP : Errno.EINVAL, notStarted.Errno);
    }

    // A valid REPORT succeeds, except on a kernel whose bitmap walker is compiled out: there the core answers
    // EOPNOTSUPP for every device before the driver is asked (checked, not skipped: it is that kernel's behaviour).
    private static async Task ExpectReportAsync(Func<ValueTask> report)
    {
        if (!KernelRig.LacksDirtyWalker)
        {
            await report();
            return;
        }
        var e = await Assert.ThrowsAsync<VfioException>(async () => await report());
        Assert.Equal(Errno.EOPNOTSUPP, e.Errno);
    }

    [Fact]
    public async Task DmaLogging_ReportWithAShortBitmap_IsRefusedBeforeTheKernelCanWritePastIt()
    {
        await using var device = KernelRig.Open(KernelRig.Devices[0]);
        await device.StartDmaLoggingAsync(4096, [new VfioDmaLoggingRange(0, 0x100000)], Ct);
        try
        {
            // 0x100000 / 4096 = 256 pages = 4 words; one word is too short.
            await Assert.ThrowsAsync<ArgumentException>(async () => await device.ReportDmaLoggingAsync(0, 0x100000, 4096, new ulong[1], Ct));
            await ExpectReportAsync(() => device.ReportDmaLoggingAsync(0, 0x100000, 4096, new ulong[4], Ct));
            // A page size the kernel rejects reaches the kernel, which answers EINVAL itself.
            var e = await Assert.ThrowsAsync<VfioException>(async () => await device.ReportDmaLoggingAsync(0, 0x100000, 0, new ulong[1], Ct));
            Assert.Equal(Errno.EINVAL, e.Errno);
        }
        finally
        {
            await device.StopDmaLoggingAsync(Ct);
        }
    }

    [Fact]
    public async Task DmaLogging_ZeroRanges_IsEINVAL_FromTheCore()
    {
        await using var device = KernelRig.Open(KernelRig.Devices[0]);
        var e = await Assert.ThrowsAsync<VfioException>(async () => await device.StartDmaLoggingAsync(4096, [], Ct));
        Assert.Equal(Errno.EINVAL, e.Errno);
    }
}
