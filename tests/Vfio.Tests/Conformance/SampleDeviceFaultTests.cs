using Vfio.Device;
using Vfio.Migration;
using Vfio.Sample;

namespace Vfio.Tests.Conformance;

public class SampleDeviceFaultTests
{
    [Fact]
    public void Defaults_HaveNoFaults()
    {
        using var device = new SampleDevice(new SampleDeviceOptions { SizeBytes = 1 << 20 });

        Assert.Equal(SampleDeviceFaults.None, SampleDeviceOptions.Default.Faults);
        Assert.Equal(EngineFaults.None, device.Faults);
    }

    [Fact]
    public void SkipEnomsg_MapsToTheEngine_AndReturnsZeroAtThePreCopyTemporaryEnd()
    {
        using var conforming = new SampleDevice(new SampleDeviceOptions { SizeBytes = 1 << 20 });
        using var faulty = new SampleDevice(new SampleDeviceOptions { SizeBytes = 1 << 20, Faults = SampleDeviceFaults.SkipEnomsg });
        var buffer = new byte[2 << 20];

        var a = conforming.SetState(VfioMigrationState.PreCopy)!;
        var b = faulty.SetState(VfioMigrationState.PreCopy)!;
        var end = Assert.Throws<VfioException>(() =>
        {
            while (a.BytesTransferred < (4 << 20))
                a.Read(buffer);
        });
        while (b.Read(buffer) > 0 && b.BytesTransferred < (4 << 20))
        {
        }

        Assert.Equal(EngineFaults.PreCopyEndReturnsZero, faulty.Faults);
        Assert.Equal(Errno.ENOMSG, end.Errno);
        Assert.Equal(0, b.Read(buffer));
        Assert.Equal(a.BytesTransferred, b.BytesTransferred);
    }
}
