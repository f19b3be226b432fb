using Vfio.Migration;
using Vfio.Sample;

namespace Vfio.Tests.Engine;

/// <summary>Sample devices wrapped for the engine: sources with seeds 1.., destinations with seeds 101...</summary>
internal sealed class EngineTestDevices : IAsyncDisposable
{
    public EngineTestDevices(int count, VfioMigrationFlags caps, long size = 1 << 20, long dirtyRate = 0, VfioMigrationFlags? destinationCaps = null)
    {
        for (int i = 0; i < count; i++)
        {
            var s = new SampleDevice(new SampleDeviceOptions { SizeBytes = size, Capabilities = caps, DirtyRateBytesPerSecond = dirtyRate, Seed = i + 1 });
            var d = new SampleDevice(new SampleDeviceOptions { SizeBytes = size, Capabilities = destinationCaps ?? caps, Seed = i + 101 });
            SourceDevices.Add(s);
            DestinationDevices.Add(d);
            Sources.Add(new InProcessMigrationDevice(s, $"sample:src{i}", ownsDevice: true));
            Destinations.Add(new InProcessMigrationDevice(d, $"sample:dst{i}", ownsDevice: true));
        }
    }

    public List<SampleDevice> SourceDevices { get; } = [];

    public List<SampleDevice> DestinationDevices { get; } = [];

    public List<IVfioMigrationDevice> Sources { get; } = [];

    public List<IVfioMigrationDevice> Destinations { get; } = [];

    public async ValueTask DisposeAsync()
    {
        foreach (var d in Sources.Concat(Destinations))
            await d.DisposeAsync();
    }
}
