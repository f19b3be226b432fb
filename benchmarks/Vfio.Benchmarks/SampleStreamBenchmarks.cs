using BenchmarkDotNet.Attributes;
using Vfio.Migration;
using Vfio.Sample;

namespace Vfio.Benchmarks;

/// <summary>
/// The sample device's STOP_COPY data path without the engine: save a whole 16 MiB image through a reused
/// 1 MiB buffer, and load that image into a second device.
/// </summary>
[MemoryDiagnoser]
public class SampleStreamBenchmarks
{
    private const int DeviceBytes = 16 << 20;
    private const int BufferBytes = 1 << 20;
    private SampleDevice _source = null!;
    private SampleDevice _destination = null!;
    private readonly byte[] _buffer = new byte[BufferBytes];
    private byte[] _image = [];

    [GlobalSetup]
    public void Setup()
    {
        _source = new SampleDevice(new SampleDeviceOptions { SizeBytes = DeviceBytes, Capabilities = VfioMigrationFlags.StopCopy, Seed = 1 });
        _destination = new SampleDevice(new SampleDeviceOptions { SizeBytes = DeviceBytes, Capabilities = VfioMigrationFlags.StopCopy, Seed = 2 });
        using var image = new MemoryStream();
        var session = _source.SetState(VfioMigrationState.StopCopy)!;
        int n;
        while ((n = session.Read(_buffer)) > 0)
            image.Write(_buffer, 0, n);
        _source.SetState(VfioMigrationState.Running);
        _image = image.ToArray();
        Resume();
        if (!_source.ComputeSha256().AsSpan().SequenceEqual(_destination.ComputeSha256()))
            throw new InvalidOperationException("the resumed device differs from the source");
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _source.Dispose();
        _destination.Dispose();
    }

    /// <summary>Stream bytes of one save (the image plus the sample format's records and END).</summary>
    public long StreamBytes => _image.Length;

    /// <summary>RUNNING → STOP_COPY, read to the end, back to RUNNING. Returns the bytes read.</summary>
    [Benchmark]
    public long Save()
    {
        var session = _source.SetState(VfioMigrationState.StopCopy)!;
        long total = 0;
        int n;
        while ((n = session.Read(_buffer)) > 0)
            total += n;
        _source.SetState(VfioMigrationState.Running);
        return total;
    }

    /// <summary>STOP → RESUMING, write the saved image in 1 MiB chunks, RESUMING → STOP (validation).</summary>
    [Benchmark]
    public void Resume()
    {
        var session = _destination.SetState(VfioMigrationState.Resuming)!;
        var image = _image.AsSpan();
        for (int offset = 0; offset < image.Length; offset += BufferBytes)
            session.Write(image.Slice(offset, Math.Min(BufferBytes, image.Length - offset)));
        _destination.SetState(VfioMigrationState.Stop);
    }
}
