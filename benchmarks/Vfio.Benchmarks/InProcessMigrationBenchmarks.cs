using BenchmarkDotNet.Attributes;
using Vfio.Engine;
using Vfio.Migration;
using Vfio.Sample;

namespace Vfio.Benchmarks;

/// <summary>
/// A whole in-process migration of one idle 16 MiB sample device (caps 0x1: setup, STOP_COPY, load,
/// switchover) through MigrationEngine's two in-memory pipes.
/// </summary>
[MemoryDiagnoser]
public class InProcessMigrationBenchmarks
{
    private const int DeviceBytes = 16 << 20;
    private SampleDevice _source = null!;
    private SampleDevice _destination = null!;
    private IVfioMigrationDevice[] _sources = [];
    private IVfioMigrationDevice[] _destinations = [];

    [GlobalSetup]
    public async Task Setup()
    {
        _source = new SampleDevice(new SampleDeviceOptions { SizeBytes = DeviceBytes, Capabilities = VfioMigrationFlags.StopCopy, Seed = 1 });
        _destination = new SampleDevice(new SampleDeviceOptions { SizeBytes = DeviceBytes, Capabilities = VfioMigrationFlags.StopCopy, Seed = 2 });
        _sources = [new InProcessMigrationDevice(_source, "sample:src", ownsDevice: true)];
        _destinations = [new InProcessMigrationDevice(_destination, "sample:dst", ownsDevice: true)];
        await Migrate();
        if (!_source.ComputeSha256().AsSpan().SequenceEqual(_destination.ComputeSha256()))
            throw new InvalidOperationException("the destination differs from the source");
    }

    [GlobalCleanup]
    public async Task Cleanup()
    {
        await _sources[0].DisposeAsync();
        await _destinations[0].DisposeAsync();
    }

    /// <summary>Source back to RUNNING (the engine leaves it in STOP), then migrate. Returns the device bytes moved.</summary>
    [Benchmark]
    public async Task<long> Migrate()
    {
        _source.SetState(VfioMigrationState.Running);
        var statistics = await MigrationEngine.MigrateAsync(_sources, _destinations);
        return statistics.TotalBytes;
    }
}
