using System.IO.Pipelines;
using Vfio.Engine;
using Vfio.Migration;
using Vfio.Sample;

namespace Vfio.Tests.Engine;

public class DestinationCorruptionTests
{
    private const VfioMigrationFlags Caps7 = VfioMigrationFlags.StopCopy | VfioMigrationFlags.P2P | VfioMigrationFlags.PreCopy;

    // Records the forward stream of a real migration of a small device.
    private static async Task<byte[]> CaptureAsync()
    {
        await using var devices = new EngineTestDevices(1, Caps7, size: 64 << 10);
        return (await StreamCapture.MigrateAsync(devices.Sources, devices.Destinations)).Bytes;
    }

    private static async Task<(Exception? Error, SampleDevice Device)> LoadAsync(byte[] stream)
    {
        var device = new SampleDevice(new SampleDeviceOptions { SizeBytes = 64 << 10, Capabilities = Caps7, Seed = 77 });
        var dev = new InProcessMigrationDevice(device, "sample:dst");
        var back = new Pipe(new PipeOptions(pauseWriterThreshold: 0));
        var input = System.IO.Pipelines.PipeReader.Create(new System.Buffers.ReadOnlySequence<byte>(stream));
        try
        {
            await new MigrationDestination([dev]).RunAsync(input, back.Writer, null, TestContext.Current.CancellationToken).WaitAsync(TimeSpan.FromSeconds(10), TestContext.Current.CancellationToken);
            return (null, device);
        }
        catch (MigrationException ex)
        {
            return (ex, device);
        }
    }

    [Fact]
    public async Task CapturedStream_LoadsIntoAFreshDestination()
    {
        var bytes = await CaptureAsync();
        var (error, device) = await LoadAsync(bytes);
        using (device)
        {
            Assert.Null(error);
            Assert.Equal(VfioMigrationState.Running, device.State);
            using var reference = new SampleDevice(new SampleDeviceOptions { SizeBytes = 64 << 10, Capabilities = Caps7, Seed = 1 });
            Assert.Equal(reference.ComputeSha256(), device.ComputeSha256());
        }
    }

    [Fact]
    public async Task CorruptedOrTruncatedStream_FailsCleanlyAndResetsTheDestination()
    {
        var bytes = await CaptureAsync();
        var positions = Enumerable.Range(0, Math.Min(700, bytes.Length))
            .Concat(Enumerable.Range(Math.Max(0, bytes.Length - 300), Math.Min(300, bytes.Length)))
            .Concat(Enumerable.Range(0, bytes.Length / 131).Select(k => k * 131))
            .Distinct().ToList();
        foreach (int pos in positions)
        {
            var copy = (byte[])bytes.Clone();
            copy[pos] ^= (byte)(1 << (pos % 8));
            await ExpectCleanFailureAsync(copy, $"bit flip at {pos}");
        }
        foreach (int len in positions.Where(p => p < bytes.Length))
            await ExpectCleanFailureAsync(bytes[..len], $"truncation at {len}");
    }

    private static async Task ExpectCleanFailureAsync(byte[] stream, string what)
    {
        var (error, device) = await LoadAsync(stream);
        using (device)
        {
            var ex = Assert.IsType<MigrationException>(error ?? new MigrationException($"{what}: the corrupted stream was accepted"), exactMatch: true);
            Assert.True(ex.Errno is Errno.EBADMSG or Errno.EPROTO or Errno.EMSGSIZE or Errno.EPIPE, $"{what}: {ex.Message}");
            Assert.Equal(VfioMigrationState.Running, device.State);
            Assert.Null(device.CurrentSession);
        }
    }
}
