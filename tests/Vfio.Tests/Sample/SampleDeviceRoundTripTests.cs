using Vfio.Device;
using Vfio.Migration;
using Vfio.Sample;

namespace Vfio.Tests.Sample;

// spec §4.2, §4.3, §4.5: a whole migration through the sample device's stream, for every caps set.

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

    [Theory]
    [InlineData(0x5ul)]
    [InlineData(0x7ul)]
    public void PreCopy_WithPagesDirtiedBetweenRounds_ConvergesToTheSameState(ulong caps)
    {
        // The "workload" is driven by hand between rounds, so the test is deterministic (no timers).
        using var source = new SampleDevice(Small((VfioMigrationFlags)caps));
        using var destination = new SampleDevice(Small((VfioMigrationFlags)caps, seed: 9));
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
                    Assert.True(n > 0); // spec §4.5: the engine reports the PRE_COPY temporary end as ENOMSG, never 0
                    resuming.Write(buffer.AsSpan(0, n));
                }
            }
            catch (VfioException e) when (e.Errno == Errno.ENOMSG)
            {
            }
            Assert.Equal(default, saving.GetPrecopyInfo() with { Reinit = false });
            source.DirtyPages(17, seed: round);
            Assert.True(saving.GetPrecopyInfo().DirtyBytes > 0);
        }
        Assert.Null(source.SetState(VfioMigrationState.StopCopy));
        int m;
        while ((m = saving.Read(buffer)) > 0)
            resuming.Write(buffer.AsSpan(0, m));
        Assert.Null(destination.SetState(VfioMigrationState.Stop));
        Assert.Equal(source.ComputeSha256(), destination.ComputeSha256());
    }

    [Fact]
    public void Stop_FreezesTheState_EvenWithTheWorkloadThreadRunning_spec_1_1()
    {
        // STOP: no internal state change. The workload thread keeps ticking, but after the arc returns it
        // may not touch the state; whenever the hashes are taken, they must agree.
        using var d = new SampleDevice(Small((VfioMigrationFlags)0x7, rate: 256L << 20));
        Assert.True(d.IsRunning);
        d.SetState(VfioMigrationState.Stop);
        Assert.False(d.IsRunning);
        var first = d.ComputeSha256();
        long dirtied = d.PagesDirtiedByWorkload;
        for (int i = 0; i < 20; i++)
            Thread.Yield();
        Assert.Equal(first, d.ComputeSha256());
        Assert.Equal(dirtied, d.PagesDirtiedByWorkload);
        d.SetState(VfioMigrationState.Running);
        Assert.True(d.IsRunning);
    }

    [Theory]
    [InlineData(0x1ul)]
    [InlineData(0x7ul)]
    public void StopCopy_OfADeviceWithARunningWorkload_ReproducesTheStoppedState(ulong caps)
    {
        using var source = new SampleDevice(Small((VfioMigrationFlags)caps, rate: 256L << 20));
        using var destination = new SampleDevice(Small((VfioMigrationFlags)caps, seed: 5));
        var saving = source.SetState(VfioMigrationState.StopCopy)!; // the workload stops on the way (…>STOP>STOP_COPY)
        var resuming = destination.SetState(VfioMigrationState.Resuming)!;
        var buffer = new byte[64 << 10];
        int n;
        while ((n = saving.Read(buffer)) > 0)
            resuming.Write(buffer.AsSpan(0, n));
        destination.SetState(VfioMigrationState.Stop);
        Assert.Equal(source.ComputeSha256(), destination.ComputeSha256());
    }
}
