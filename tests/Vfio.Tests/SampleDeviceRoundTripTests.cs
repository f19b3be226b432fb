using Vfio.Device;
using Vfio.Migration;
using Vfio.Sample;

namespace Vfio.Tests;

public class SampleDeviceRoundTripTests
{
    private static SampleDeviceOptions Small(VfioMigrationFlags caps, long rate = 0, int seed = 1)
        => new() { SizeBytes = 1 << 20, Capabilities = caps, DirtyRateBytesPerSecond = rate, Seed = seed };

    [Theory]
    [InlineData(0x1ul)]
    [InlineData(0x3ul)]
    [InlineData(0x5ul)]
    [InlineData(0x7ul)]
    public void StopCopy_ThenResume_ReproducesTheState(ulong caps)
    {
        using var source = new SampleDevice(Small((VfioMigrationFlags)caps, seed: 1));
        using var destination = new SampleDevice(Small((VfioMigrationFlags)caps, seed: 2));
        source.DirtyPages(100, seed: 7);
        Assert.NotEqual(source.ComputeSha256(), destination.ComputeSha256());

        var saving = source.SetState(VfioMigrationState.StopCopy)!;
        var resuming = destination.SetState(VfioMigrationState.Resuming)!;
        var buffer = new byte[10_000]; // deliberately not a record multiple
        int n;
        while ((n = saving.Read(buffer)) > 0)
            resuming.Write(buffer.AsSpan(0, n));
        destination.SetState(VfioMigrationState.Running);
        source.SetState(VfioMigrationState.Running);

        Assert.Equal(source.ComputeSha256(), destination.ComputeSha256());
    }

    [Fact]
    public void PreCopy_WithWorkload_ConvergesToTheSameState()
    {
        using var source = new SampleDevice(Small(VfioMigrationFlags.StopCopy | VfioMigrationFlags.PreCopy, rate: 4 << 20));
        using var destination = new SampleDevice(Small(VfioMigrationFlags.StopCopy | VfioMigrationFlags.PreCopy, seed: 9));
        var saving = source.SetState(VfioMigrationState.PreCopy)!;
        var resuming = destination.SetState(VfioMigrationState.Resuming)!;
        var buffer = new byte[1 << 16];
        for (int round = 0; round < 5; round++)
        {
            try
            {
                while (true)
                {
                    int n = saving.Read(buffer);
                    resuming.Write(buffer.AsSpan(0, n));
                }
            }
            catch (VfioException e) when (e.Errno == Errno.ENOMSG)
            {
            }
            Thread.Sleep(20);
        }
        Assert.Null(source.SetState(VfioMigrationState.StopCopy));
        int m;
        while ((m = saving.Read(buffer)) > 0)
            resuming.Write(buffer.AsSpan(0, m));
        destination.SetState(VfioMigrationState.Stop);
        Assert.True(source.PagesDirtiedByWorkload > 0);
        Assert.Equal(source.ComputeSha256(), destination.ComputeSha256());
    }
}
