using System.Security.Cryptography;
using Vfio.Device;
using Vfio.Migration;
using Vfio.User.Client;
using Vfio.User.Server;
using Vfio.User.Transport;

namespace Vfio.IntegrationTests;

/// <summary>
/// Zero-copy STOP_COPY saving (MigrationDevice.TakeStopCopyData): the server sends a device's own memory as the
/// MIG_DATA_READ data. The stream must be byte-identical to the copying path, replies keep libvfio-user's padding at
/// the end (spec §6.13, §10.1 item 3), the session rules still apply (spec §4.1–§4.4), and PRE_COPY never uses it.
/// </summary>
public sealed class ZeroCopyStopCopyTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    // Stream = its image; STOP_COPY hands the image out in pieces of at most Piece bytes (a device may give less).
    internal sealed class ImageDevice(byte[] image, int piece, bool zeroCopy) : MigrationDevice(VfioMigrationFlags.StopCopy | VfioMigrationFlags.PreCopy)
    {
        private int _at;

        public int Takes { get; private set; }

        protected override void OnStopToStopCopy() => _at = 0;

        protected override void OnRunningToPreCopy() => _at = 0;

        protected override void OnPreCopyToStopCopy() => _at = 0;

        protected override void OnStopToResuming()
        {
        }

        protected override void OnResumingToStop()
        {
        }

        protected override ulong EstimateStopCopySize() => (ulong)(image.Length - _at);

        protected override int ReadSavingData(Span<byte> destination, VfioMigrationState state)
        {
            int n = Math.Min(destination.Length, image.Length - _at);
            image.AsSpan(_at, n).CopyTo(destination);
            _at += n;
            return n;
        }

        protected override ReadOnlyMemory<byte>? TakeStopCopyData(int maxLength)
        {
            if (!zeroCopy)
                return null;
            Takes++;
            int n = Math.Min(Math.Min(maxLength, piece), image.Length - _at);
            var data = image.AsMemory(_at, n);
            _at += n;
            return data;
        }

        protected override void WriteResumingData(ReadOnlySpan<byte> source) => throw new VfioException(Errno.EINVAL, "write", "save-only test device");
    }

    [Theory(Timeout = 60000)]
    [InlineData(3 << 20, 1 << 20)]            // whole replies from device memory, end on a reply boundary
    [InlineData((5 << 20) + 4321, 1 << 20)]   // a short, padded last reply
    [InlineData((2 << 20) + 17, 300_000)]     // the device hands out less than asked: the server fills up
    public async Task Stream_over_vfio_user_is_the_same_with_and_without_zero_copy(int size, int piece)
    {
        TestContext.Current.CancellationToken.ThrowIfCancellationRequested();
        var image = new byte[size];
        new Random(size).NextBytes(image);
        var copied = await ReadRemoteStopCopyAsync(new ImageDevice(image, piece, zeroCopy: false));
        var device = new ImageDevice(image, piece, zeroCopy: true);
        var taken = await ReadRemoteStopCopyAsync(device);
        Assert.Equal(SHA256.HashData(image), copied);
        Assert.Equal(copied, taken);
        Assert.True(device.Takes > 0);
    }

    [Fact]
    public void Take_follows_the_session_rules_and_is_only_offered_in_stop_copy_spec_4_1_to_4_4()
    {
        TestContext.Current.CancellationToken.ThrowIfCancellationRequested();
        var image = new byte[10_000];
        new Random(1).NextBytes(image);
        using var device = new ImageDevice(image, 4096, zeroCopy: true);
        var precopy = device.SetState(VfioMigrationState.PreCopy)!;
        Assert.Null(precopy.TryTakeStopCopy(4096)); // PRE_COPY: the device keeps running, never zero-copy
        device.SetState(VfioMigrationState.Running);
        Assert.Equal(Errno.ENODEV, Assert.Throws<VfioException>(() => precopy.TryTakeStopCopy(4096)).Errno);
        device.SetState(VfioMigrationState.Stop);
        var session = device.SetState(VfioMigrationState.StopCopy)!;
        var first = session.TryTakeStopCopy(4096);
        Assert.NotNull(first);
        Assert.Equal(image.AsSpan(0, 4096).ToArray(), first.Value.ToArray());
        Assert.Equal(4096, session.BytesTransferred);
        var rest = new byte[10_000];
        int n = session.Read(rest); // reads continue where the take stopped
        Assert.Equal(image.AsSpan(4096).ToArray(), rest.AsSpan(0, n).ToArray());
        Assert.Equal(0, session.TryTakeStopCopy(4096)!.Value.Length); // end of stream
        device.SetState(VfioMigrationState.Stop);
        Assert.Equal(Errno.ENODEV, Assert.Throws<VfioException>(() => session.TryTakeStopCopy(4096)).Errno);
        var resuming = device.SetState(VfioMigrationState.Resuming)!;
        Assert.Equal(Errno.EBADF, Assert.Throws<VfioException>(() => resuming.TryTakeStopCopy(4096)).Errno);
    }

    private static async Task<byte[]> ReadRemoteStopCopyAsync(ImageDevice device)
    {
        using (device)
        {
            var definition = new VfioUserDeviceDefinition(device, "image");
            var (serverEnd, clientEnd) = UnixFdSocket.CreateSocketPair();
            using var cts = CancellationTokenSource.CreateLinkedTokenSource(Ct);
            var serving = Task.Run(() => VfioUserServer.ServeConnectedSocketAsync(serverEnd, definition, null, cts.Token), Ct);
            using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            await using (var remote = new VfioUserMigrationDevice(await VfioUserClient.ConnectAsync(clientEnd, "pair", null, Ct)))
            {
                await using var stream = await remote.SetStateAsync(VfioMigrationState.StopCopy, Ct) ?? throw new InvalidOperationException("no stream");
                var buffer = new byte[1 << 20];
                int n;
                while ((n = await stream.ReadAsync(buffer, Ct)) > 0)
                    sha.AppendData(buffer, 0, n);
            }
            await serving.WaitAsync(TimeSpan.FromSeconds(30), Ct);
            serverEnd.Dispose();
            return sha.GetHashAndReset();
        }
    }
}
