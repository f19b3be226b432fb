using Vfio.Compat;
using Vfio.Engine;
using Vfio.Sample;
using Vfio.User.Client;

namespace Vfio.IntegrationTests;

/// <summary>Migration profiles over a real vfio-user socket: what the server reports (docs/compatibility.md).</summary>
public sealed class CompatVfioUserTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Profile_CarriesWhatTheServerReports_PciIdsRegionsAndVersion()
    {
        await using var fx = new TestSupport.ServerFixture();
        await using var device = await VfioUserMigrationDevice.ConnectAsync(fx.Path, null, Ct);
        var profile = await device.GetProfileAsync(Ct);
        Assert.Equal("vfio-user", profile.Identity.Transport);
        Assert.Equal((ushort)0xdead, profile.Identity.VendorId);
        Assert.Equal((ushort)0xbeef, profile.Identity.DeviceId);
        Assert.Equal((ushort)0xcafe, profile.Identity.SubsystemVendorId);
        Assert.Equal((ushort)0xbabe, profile.Identity.SubsystemId);
        Assert.StartsWith("vfio-user 0.2, max_data_xfer_size 1048576", profile.Identity.Server, StringComparison.Ordinal);
        Assert.Equal(9, profile.Regions.Count);
        Assert.Equal((ulong)fx.Device.SizeBytes, profile.Regions[0].Size);
        Assert.Null(profile.Format);
    }

    [Fact]
    public async Task ServersOfAnotherSize_AreRefusedBeforeTheSourceStops()
    {
        // Without the check this surfaced only once the stream reached the stopped destination ("EINVAL: write migration data").
        var caps = Migration.VfioMigrationFlags.StopCopy | Migration.VfioMigrationFlags.PreCopy;
        await using var a = new TestSupport.ServerFixture();
        await using var b = new TestSupport.ServerFixture(new SampleDeviceOptions { SizeBytes = 2 << 20, Capabilities = caps, Seed = 3 });
        await using var source = await VfioUserMigrationDevice.ConnectAsync(a.Path, null, Ct);
        await using var destination = await VfioUserMigrationDevice.ConnectAsync(b.Path, null, Ct);
        var report = CompatibilityCheck.Check(await source.GetProfileAsync(Ct), await destination.GetProfileAsync(Ct), preCopy: true);
        Assert.Equal("region 0 is 1048576 bytes on the source, 2097152 on the destination", Assert.Single(report.Reasons).Message);

        var ex = await Assert.ThrowsAsync<MigrationException>(() => MigrationEngine.MigrateAsync([source], [destination], null, null, Ct));
        Assert.Equal(Errno.EOPNOTSUPP, ex.Errno);
        Assert.Equal(MigrationPhase.Setup, ex.Phase);
        Assert.Equal(Migration.VfioMigrationState.Running, a.Device.State);
        Assert.Equal(Migration.VfioMigrationState.Running, b.Device.State);
    }
}
