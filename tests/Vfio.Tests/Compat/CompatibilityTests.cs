using System.IO.Pipelines;
using Vfio.Compat;
using Vfio.Engine;
using Vfio.Kernel;
using Vfio.Migration;
using Vfio.Sample;
using Vfio.Tests.Engine;

namespace Vfio.Tests.Compat;

/// <summary>Pre-flight compatibility: profiles, the rules of docs/compatibility.md, and the engine's refusal.</summary>
public class CompatibilityTests
{
    private const VfioMigrationFlags Caps3 = VfioMigrationFlags.StopCopy | VfioMigrationFlags.P2P;
    private const VfioMigrationFlags Caps7 = VfioMigrationFlags.StopCopy | VfioMigrationFlags.P2P | VfioMigrationFlags.PreCopy;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static MigrationProfile Pci(ushort device = 0x101e, ushort subsystem = 0x0001, string driver = "mlx5_vfio_pci", string version = "1.0") => new()
    {
        Name = "vfio:0000:01:00.1",
        Identity = new DeviceIdentity { Transport = "kernel", VendorId = 0x15b3, DeviceId = device, SubsystemVendorId = 0x15b3, SubsystemId = subsystem, Driver = driver, DriverVersion = version },
        Capabilities = Caps7,
        Regions = [new RegionProfile(0, 1 << 20, 0xf), new RegionProfile(7, 4096, 0x3)],
        StopCopySize = 300 << 20,
        Format = new DeviceFormat
        {
            Name = "acme-vf",
            Version = 3,
            MinVersion = 2,
            Features = 0x3,
            Parameters = new Dictionary<string, ulong> { ["queues_layout"] = 1 },
            Limits = new Dictionary<string, ulong> { ["queues"] = 16, [CompatibilityCheck.StopCopyLimit] = 1L << 30 },
        },
    };

    [Fact]
    public async Task SameSampleDevices_AreCompatible()
    {
        await using var devices = new EngineTestDevices(1, Caps7);
        var report = CompatibilityCheck.Check(await devices.Sources[0].GetProfileAsync(Ct), await devices.Destinations[0].GetProfileAsync(Ct), preCopy: true);
        Assert.True(report.Compatible, string.Join("; ", report.Reasons));
        Assert.Equal("vfio-mig-sample", report.Source.Format!.Name);
        Assert.Equal("in-process", report.Source.Identity.Transport);
    }

    [Fact]
    public async Task SampleDevicesOfAnotherSize_AreNotCompatible_AndTheReasonNamesBothValues()
    {
        await using var src = new EngineTestDevices(1, Caps7);
        await using var dst = new EngineTestDevices(1, Caps7, size: 2 << 20);
        var report = CompatibilityCheck.Check(await src.Sources[0].GetProfileAsync(Ct), await dst.Destinations[0].GetProfileAsync(Ct), preCopy: true);
        var reason = Assert.Single(report.Reasons);
        Assert.Equal("format.parameter", reason.Code);
        Assert.Equal("page_count differs: source 256, destination 512", reason.Message);
    }

    [Fact]
    public void EveryReasonIsListed_NotOnlyTheFirst()
    {
        var source = Pci() with { Format = Pci().Format! with { Version = 4, Features = 0x7, Limits = new Dictionary<string, ulong> { ["queues"] = 32 } }, StopCopySize = 2L << 30 };
        var destination = Pci(driver: "other_vfio_pci") with
        {
            Capabilities = Caps3,
            Regions = [new RegionProfile(0, 2 << 20, 0xf), new RegionProfile(7, 4096, 0x3)],
            Format = Pci().Format! with { Parameters = new Dictionary<string, ulong> { ["queues_layout"] = 2 } },
        };
        var report = CompatibilityCheck.Check(source, destination, preCopy: true, deviceCount: 1);
        Assert.False(report.Compatible);
        Assert.Equal(
            ["caps.pre_copy", "driver", "regions", "format.version", "format.features", "format.parameter", "format.limit", "stop_copy_size"],
            report.Reasons.Select(r => r.Code));
        Assert.Contains(report.Reasons, r => r.Message == "region 0 is 1048576 bytes on the source, 2097152 on the destination");
        Assert.Contains(report.Reasons, r => r.Message == "acme-vf version 4 from the source; the destination reads versions 2 to 3");
        Assert.Contains(report.Reasons, r => r.Message.Contains("feature bits 0x4", StringComparison.Ordinal));
    }

    [Fact]
    public void AnotherBoardVariant_IsAReason_AnotherDriverVersionOnlyANote()
    {
        var variant = CompatibilityCheck.Check(Pci(), Pci(subsystem: 0x0002), preCopy: true);
        Assert.Equal("pci.subsystem", Assert.Single(variant.Reasons).Code);
        var device = CompatibilityCheck.Check(Pci(), Pci(device: 0x1021), preCopy: true);
        Assert.Equal("pci.device", Assert.Single(device.Reasons).Code);
        var version = CompatibilityCheck.Check(Pci(), Pci(version: "2.0"), preCopy: true);
        Assert.True(version.Compatible);
        Assert.Equal("driver.version", Assert.Single(version.Notes).Code);
    }

    [Fact]
    public void RegionFlags_OnlyReadWriteDecide_MmapIsANote()
    {
        var mmapOnly = CompatibilityCheck.Check(Pci(), Pci() with { Regions = [new RegionProfile(0, 1 << 20, 0xb), new RegionProfile(7, 4096, 0x3)] }, preCopy: true);
        Assert.True(mmapOnly.Compatible);
        Assert.Contains(mmapOnly.Notes, n => n.Code == "regions");
        var readOnly = CompatibilityCheck.Check(Pci(), Pci() with { Regions = [new RegionProfile(0, 1 << 20, 0xd), new RegionProfile(7, 4096, 0x3)] }, preCopy: true);
        Assert.Equal("regions", Assert.Single(readOnly.Reasons).Code);
    }

    [Fact]
    public void WithoutPreCopy_ADestinationWithoutPreCopyIsFine_ButSeveralDevicesNeedP2P()
    {
        var source = Pci() with { Format = null };
        var destination = Pci() with { Format = null, Capabilities = VfioMigrationFlags.StopCopy | VfioMigrationFlags.PreCopy };
        Assert.True(CompatibilityCheck.Check(source, destination, preCopy: false).Compatible);
        Assert.Equal("caps.pre_copy", Assert.Single(CompatibilityCheck.Check(source, destination with { Capabilities = VfioMigrationFlags.StopCopy }, preCopy: true).Reasons).Code);
        Assert.Equal("caps.p2p", Assert.Single(CompatibilityCheck.Check(source, destination, preCopy: false, deviceCount: 2).Reasons).Code);
        Assert.Contains(CompatibilityCheck.Check(source, destination, preCopy: false).Notes, n => n.Code == "format");
    }

    [Fact]
    public void ProfileJson_RoundTrips_AndBadInputIsRefusedWithAnErrno()
    {
        var profile = Pci();
        var back = MigrationProfileJson.Decode(MigrationProfileJson.Encode(profile));
        Assert.Equal(profile.Identity, back.Identity);
        Assert.Equal(profile.Regions, back.Regions);
        Assert.Equal(profile.StopCopySize, back.StopCopySize);
        Assert.Equal(profile.Format!.Limits["queues"], back.Format!.Limits["queues"]);
        Assert.True(CompatibilityCheck.Check(profile, back, preCopy: true).Compatible);
        Assert.Contains("\"vendor_id\":5555", System.Text.Encoding.UTF8.GetString(MigrationProfileJson.Encode(profile)), StringComparison.Ordinal);
        // Unknown keys from a newer peer are ignored.
        Assert.Equal("x", MigrationProfileJson.Decode("{\"name\":\"x\",\"from_the_future\":[1,2]}"u8).Name);
        Assert.Equal(Errno.EPROTO, Assert.Throws<VfioException>(() => MigrationProfileJson.Decode("{\"name\":"u8)).Errno);
        Assert.Equal(Errno.EMSGSIZE, Assert.Throws<VfioException>(() => MigrationProfileJson.Decode(new byte[MigrationProfileJson.MaxBytes + 1])).Errno);
    }

    [Fact]
    public void KernelIdentity_IsReadFromSysfs()
    {
        string root = Path.Combine(Path.GetTempPath(), "vfio-compat-" + Guid.NewGuid().ToString("N")[..10]);
        try
        {
            string dev = Path.Combine(root, "devices", "0000:01:00.1");
            string module = Path.Combine(root, "module", "mlx5_vfio_pci");
            Directory.CreateDirectory(dev);
            Directory.CreateDirectory(module);
            File.WriteAllText(Path.Combine(dev, "vendor"), "0x15b3\n");
            File.WriteAllText(Path.Combine(dev, "device"), "0x101e\n");
            File.WriteAllText(Path.Combine(dev, "subsystem_vendor"), "0x15b3\n");
            File.WriteAllText(Path.Combine(dev, "subsystem_device"), "0x0048\n");
            File.WriteAllText(Path.Combine(module, "srcversion"), "ABC123\n");
            string driver = Path.Combine(root, "drivers", "mlx5_vfio_pci");
            Directory.CreateDirectory(driver);
            File.CreateSymbolicLink(Path.Combine(driver, "module"), module);
            File.CreateSymbolicLink(Path.Combine(dev, "driver"), driver);

            var id = VfioSysfs.Identity(new KernelDeviceEntry("0000:01:00.1", KernelDeviceBus.Pci, dev, 12, "mlx5_vfio_pci"));
            Assert.Equal(new DeviceIdentity { Transport = "kernel", VendorId = 0x15b3, DeviceId = 0x101e, SubsystemVendorId = 0x15b3, SubsystemId = 0x0048, Driver = "mlx5_vfio_pci", DriverVersion = "ABC123" }, id);
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    [Fact]
    public async Task Engine_IncompatibleDestination_IsRefusedInSetup_BeforeAnySourceDeviceLeavesRunning()
    {
        await using var src = new EngineTestDevices(2, Caps7);
        await using var dst = new EngineTestDevices(2, Caps7, size: 2 << 20);
        var arcs = new List<MigrationArc>();
        foreach (var d in src.SourceDevices)
            d.ArcCommitted += (_, arc) => arcs.Add(arc);
        var ex = await Assert.ThrowsAsync<MigrationException>(() => MigrationEngine.MigrateAsync(src.Sources, dst.Destinations, null, null, Ct));
        Assert.Equal(MigrationSide.Destination, ex.Side);
        Assert.Equal(MigrationPhase.Setup, ex.Phase);
        Assert.Equal(Errno.EOPNOTSUPP, ex.Errno);
        // Both devices' reasons, in one refusal.
        Assert.Contains("incompatible (2 reasons)", ex.Message, StringComparison.Ordinal);
        Assert.Contains("device 0: page_count differs", ex.Message, StringComparison.Ordinal);
        Assert.Contains("device 1: page_count differs", ex.Message, StringComparison.Ordinal);
        Assert.Empty(arcs);
        Assert.All(dst.DestinationDevices, d => Assert.Equal(VfioMigrationState.Running, d.State));
    }

    [Fact]
    public async Task Engine_SourceWithTheCheckOff_SendsNoProfile_AndTheDestinationSaysSo()
    {
        await using var devices = new EngineTestDevices(1, Caps7);
        var forward = new Pipe();
        var back = new Pipe();
        var destination = Task.Run(() => new MigrationDestination(devices.Destinations).RunAsync(forward.Reader, back.Writer, null, Ct), Ct);
        await new MigrationSource(devices.Sources, MigrationOptions.Default with { CheckCompatibility = false }).RunAsync(forward.Writer, back.Reader, null, Ct);
        var stats = await destination;
        Assert.Contains(stats.Warnings, w => w.Contains("sent no profile", StringComparison.Ordinal));
        Assert.Equal(devices.SourceDevices[0].ComputeSha256(), devices.DestinationDevices[0].ComputeSha256());
    }
}
