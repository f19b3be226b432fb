using System.Globalization;
using Vfio.Engine;
using Vfio.Migration;

namespace Vfio.KernelTests;

/// <summary>
/// The migration engine over the real kernel: a full migration between the two mdevs, and rollback after
/// faults injected in the driver (module parameters). The source must end RUNNING with its region unchanged.
/// </summary>
public sealed class EngineTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Engine_MigratesADeviceBetweenTheTwoMdevs_RegionsEqual()
    {
        await using var a = KernelRig.Open(KernelRig.Devices[0]);
        await using var b = KernelRig.Open(KernelRig.Devices[1]);
        await a.ResetAsync(Ct);
        await b.ResetAsync(Ct);
        var pattern = MigrationHelpers.Pattern((int)a.Device.GetRegionInfo(0).Size, seed: 4242);
        a.Device.WriteRegion(0, 0, pattern);

        var stats = await MigrationEngine.MigrateAsync([a], [b], cancellationToken: Ct);

        Assert.True(stats.TotalBytes > pattern.Length);
        Assert.Equal(VfioMigrationState.Running, await b.GetStateAsync(Ct));
        Assert.Equal(pattern, MigrationHelpers.ReadRegion(b));
        await a.ResetAsync(Ct);
    }

    // spec §3.1/§3.2: the arc fails in the driver; the engine puts the source back to RUNNING and resets the destination.
    [Theory]
    [InlineData("fail_arc", "STOP>STOP_COPY")]
    [InlineData("fail_arc", "RESUMING>STOP")]
    [InlineData("corrupt_stream", "1")]
    public async Task Engine_RollsBack_WhenTheKernelDriverFails(string parameter, string value)
    {
        await using var a = KernelRig.Open(KernelRig.Devices[0]);
        await using var b = KernelRig.Open(KernelRig.Devices[1]);
        await a.ResetAsync(Ct);
        await b.ResetAsync(Ct);
        var pattern = MigrationHelpers.Pattern((int)a.Device.GetRegionInfo(0).Size, seed: value.Length);
        a.Device.WriteRegion(0, 0, pattern);
        string before = KernelRig.ReadParam(parameter);
        KernelRig.WriteParam(parameter, value);
        try
        {
            var e = await Assert.ThrowsAsync<MigrationException>(() => MigrationEngine.MigrateAsync([a], [b], cancellationToken: Ct));
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{parameter}={value}: {e.Message}"));
        }
        finally
        {
            KernelRig.WriteParam(parameter, parameter == "fail_arc" ? "\n" : before);
        }
        Assert.Equal(VfioMigrationState.Running, await a.GetStateAsync(Ct));
        Assert.Equal(pattern, MigrationHelpers.ReadRegion(a));
        Assert.Equal(VfioMigrationState.Running, await b.GetStateAsync(Ct));
        await a.ResetAsync(Ct);
    }
}
