using System.Net.Sockets;
using BenchmarkDotNet.Attributes;
using Vfio.Migration;
using Vfio.Sample;
using Vfio.User.Client;
using Vfio.User.Server;
using Vfio.User.Protocol;
using Vfio.User.Transport;

namespace Vfio.Benchmarks;

/// <summary>
/// STOP_COPY of a 64 MiB sample device (caps 0x1) through our vfio-user client and an embedded server over a real
/// AF_UNIX socketpair (MIG_DATA_READ, 1 MiB requests pipelined), and the same byte count through a bare socketpair
/// sent from device-sized memory (the reference).
/// </summary>
[MemoryDiagnoser]
public class VfioUserStopCopyBenchmarks
{
    private const int DeviceBytes = 64 << 20;
    private SampleDevice _hosted = null!;
    private Socket _serverEnd = null!;
    private CancellationTokenSource _stop = null!;
    private Task _serving = Task.CompletedTask;
    private VfioUserMigrationDevice _device = null!;
    private readonly byte[] _buffer = new byte[1 << 20];
    private byte[] _rawSource = [];
    private long _streamBytes;
    private Socket _rawWriter = null!;
    private Socket _rawReader = null!;

    [GlobalSetup]
    public async Task Setup()
    {
        _hosted = new SampleDevice(new SampleDeviceOptions { SizeBytes = DeviceBytes, Capabilities = VfioMigrationFlags.StopCopy, Seed = 3 });
        Socket clientEnd;
        (_serverEnd, clientEnd) = UnixFdSocket.CreateSocketPair();
        _stop = new CancellationTokenSource();
        _serving = Task.Run(() => VfioUserServer.ServeConnectedSocketAsync(_serverEnd, VfioUserDeviceDefinition.ForSample(_hosted), null, _stop.Token));
        _device = new VfioUserMigrationDevice(await VfioUserClient.ConnectAsync(clientEnd, "bench"));
        _streamBytes = await StopCopy();
        if (_streamBytes < DeviceBytes)
            throw new InvalidOperationException($"the stop-copy stream carried {_streamBytes} bytes for a {DeviceBytes}-byte device");
        _rawSource = new byte[DeviceBytes];
        new Random(4).NextBytes(_rawSource);
        (_rawWriter, _rawReader) = UnixFdSocket.CreateSocketPair();
        // The buffers every vfio-user socket asks for, so both sides run with the same socket settings.
        UnixFdSocket.EnlargeBuffers(_rawWriter, VfioUserTuning.SocketBufferBytes);
        UnixFdSocket.EnlargeBuffers(_rawReader, VfioUserTuning.SocketBufferBytes);
    }

    [GlobalCleanup]
    public async Task Cleanup()
    {
        await _device.DisposeAsync();
        await _stop.CancelAsync();
        await _serving;
        _serverEnd.Dispose();
        _stop.Dispose();
        _hosted.Dispose();
        _rawWriter.Dispose();
        _rawReader.Dispose();
    }

    /// <summary>RUNNING → STOP_COPY, the whole stream read with 1 MiB reads, back to RUNNING. Returns the stream bytes.</summary>
    [Benchmark(Baseline = true)]
    public async Task<long> StopCopy()
    {
        long total = 0;
        await using (var stream = await _device.SetStateAsync(VfioMigrationState.StopCopy) ?? throw new InvalidOperationException("no stream"))
        {
            int n;
            while ((n = await stream.ReadAsync(_buffer)) > 0)
                total += n;
        }
        await _device.SetStateAsync(VfioMigrationState.Running);
        return total;
    }

    /// <summary>
    /// The same number of bytes through a bare socketpair (made in the setup, outside the timed operation), the
    /// plainest fast way: blocking 1 MiB sends of device-sized memory on one thread, blocking receives on this one.
    /// </summary>
    [Benchmark]
    public long RawSocketpair()
    {
        var writer = new Thread(() =>
        {
            int at = 0;
            for (long left = _streamBytes; left > 0;)
            {
                if (at == _rawSource.Length)
                    at = 0;
                int n = _rawWriter.Send(_rawSource.AsSpan(at, (int)Math.Min(Math.Min(1 << 20, left), _rawSource.Length - at)), SocketFlags.None);
                left -= n;
                at += n;
            }
        }) { IsBackground = true };
        writer.Start();
        long got = 0;
        while (got < _streamBytes)
        {
            int n = _rawReader.Receive(_buffer, SocketFlags.None);
            if (n == 0)
                break;
            got += n;
        }
        writer.Join();
        return got;
    }
}
