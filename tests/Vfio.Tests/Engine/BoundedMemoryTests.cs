using System.Buffers;
using System.IO.Pipelines;
using Vfio.Engine;
using Vfio.Migration;

namespace Vfio.Tests.Engine;

public class BoundedMemoryTests
{
    [Fact]
    public async Task Migration_BuffersAFewFramesNotTheDeviceState()
    {
        const long size = 32 << 20;
        await using var devices = new EngineTestDevices(1, VfioMigrationFlags.StopCopy | VfioMigrationFlags.P2P | VfioMigrationFlags.PreCopy, size: size);
        var ct = TestContext.Current.CancellationToken;
        var pool = new TrackingPool();
        long pause = 4L << 20;
        var forward = new Pipe(new PipeOptions(pool: pool, pauseWriterThreshold: pause, resumeWriterThreshold: pause / 2, useSynchronizationContext: false));
        var back = new Pipe(new PipeOptions(useSynchronizationContext: false));

        var destination = Task.Run(() => new MigrationDestination(devices.Destinations).RunAsync(forward.Reader, back.Writer, null, ct), ct);
        var stats = await new MigrationSource(devices.Sources).RunAsync(forward.Writer, back.Reader, null, ct);
        await destination;

        Assert.True(stats.TotalBytes >= size);
        // The pause threshold, one frame being filled and segment slack — never the 32 MiB state.
        Assert.InRange(pool.Peak, 1L << 20, 8L << 20);
        Assert.Equal(devices.SourceDevices[0].ComputeSha256(), devices.DestinationDevices[0].ComputeSha256());
    }

    private sealed class TrackingPool : MemoryPool<byte>
    {
        private long _current;
        private long _peak;

        public long Peak => Interlocked.Read(ref _peak);

        public override int MaxBufferSize => int.MaxValue;

        public override IMemoryOwner<byte> Rent(int minBufferSize = -1)
        {
            int n = Math.Max(minBufferSize, 4096);
            long now = Interlocked.Add(ref _current, n);
            long peak;
            while (now > (peak = Interlocked.Read(ref _peak)) && Interlocked.CompareExchange(ref _peak, now, peak) != peak)
            {
            }
            return new Owner(this, new byte[n]);
        }

        protected override void Dispose(bool disposing)
        {
        }

        private sealed class Owner(TrackingPool pool, byte[] array) : IMemoryOwner<byte>
        {
            private bool _disposed;

            public Memory<byte> Memory => array;

            public void Dispose()
            {
                if (_disposed)
                    return;
                _disposed = true;
                Interlocked.Add(ref pool._current, -array.Length);
            }
        }
    }
}
