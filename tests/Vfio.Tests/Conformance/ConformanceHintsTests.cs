using Vfio.Conformance;
using Vfio.Migration;
using Vfio.Sample;
using Vfio.Tests.TestSupport;

namespace Vfio.Tests.Conformance;

// What the checker cannot ask a device comes by optional interface, not by the CLI knowing the sample's type.
public sealed class ConformanceHintsTests
{
    [Fact]
    public async Task The_sample_behind_the_in_process_transport_offers_deterministic_streams_and_guest_writes()
    {
        var sample = new SampleDevice(new SampleDeviceOptions { SizeBytes = 1 << 20 });
        await using var device = new InProcessMigrationDevice(sample, "sample:test", ownsDevice: true);
        var hints = Assert.IsAssignableFrom<IConformanceHints>(device);
        Assert.True(hints.DeterministicStreams);
        Assert.True(hints.CanGenerateDeviceWrites);
        byte[] before = sample.ComputeSha256();
        await hints.GenerateDeviceWritesAsync(TestContext.Current.CancellationToken);
        Assert.NotEqual(before, sample.ComputeSha256());
    }

    [Fact]
    public async Task Another_in_process_device_offers_neither()
    {
        await using var device = new InProcessMigrationDevice(new RecordingDevice(VfioMigrationFlags.StopCopy), "recording", ownsDevice: true);
        var hints = (IConformanceHints)device;
        Assert.False(hints.DeterministicStreams);
        Assert.False(hints.CanGenerateDeviceWrites);
        var e = await Assert.ThrowsAsync<VfioException>(() => hints.GenerateDeviceWritesAsync(TestContext.Current.CancellationToken).AsTask());
        Assert.Equal(Errno.EOPNOTSUPP, e.Errno);
    }
}
