using Vfio.Cli;
using Vfio.Migration;
using Vfio.Sample;

namespace Vfio.Tests.Cli;

/// <summary>What each device kind's digest covers (kernel devices are covered in the guest: run-in-guest.sh).</summary>
public class DeviceDigestTests
{
    [Fact]
    public async Task Sample_DigestIsTheStateSha256_OfKindBar0()
    {
        using var device = new SampleDevice(SampleDeviceOptions.Default with { SizeBytes = 1 << 20, Seed = 3 });
        await using var migration = new InProcessMigrationDevice(device, "sample:test");
        var digest = await DeviceDigest.ComputeAsync(migration, TestContext.Current.CancellationToken);
        Assert.Equal(device.ComputeSha256(), digest.Value);
        Assert.Equal(DeviceDigest.Bar0Kind, digest.Kind);
        Assert.Equal("", digest.Note);
    }

    [Fact]
    public async Task DeviceWithoutReadBack_HasNoDigest_AndSaysWhy()
    {
        using var device = new SampleDevice(SampleDeviceOptions.Default with { SizeBytes = 1 << 20 });
        await using var wrapped = new FaultInjectingDevice(new InProcessMigrationDevice(device, "sample:wrapped"), "resume-stop");
        var digest = await DeviceDigest.ComputeAsync(wrapped, TestContext.Current.CancellationToken);
        Assert.Empty(digest.Value);
        Assert.Equal("", digest.Kind);
        Assert.Equal("verification skipped: sample:wrapped offers no read-back of its state to this program", digest.Note);
    }
}
