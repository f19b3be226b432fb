using Vfio.Engine;
using Vfio.Migration;

namespace Vfio.Tests.Engine;

public class MigrationEngineTests
{
    [Theory]
    [InlineData(0x1ul)]
    [InlineData(0x3ul)]
    [InlineData(0x5ul)]
    [InlineData(0x7ul)]
    public async Task MigrateAsync_EachCapabilitySet_DestinationMatchesSource(ulong caps)
    {
        await using var devices = new EngineTestDevices(1, (VfioMigrationFlags)caps, dirtyRate: 2 << 20);
        var stats = await MigrationEngine.MigrateAsync(devices.Sources, devices.Destinations, MigrationOptions.Default, null, TestContext.Current.CancellationToken);

        Assert.Equal(VfioMigrationState.Stop, devices.SourceDevices[0].State);
        Assert.Equal(VfioMigrationState.Running, devices.DestinationDevices[0].State);
        Assert.Equal(devices.SourceDevices[0].ComputeSha256(), devices.DestinationDevices[0].ComputeSha256());
        Assert.Equal(((VfioMigrationFlags)caps & VfioMigrationFlags.PreCopy) != 0, stats.PreCopyUsed);
        Assert.True(stats.Downtime > TimeSpan.Zero);
    }
}
