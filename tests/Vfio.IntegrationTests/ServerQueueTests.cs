using System.Buffers.Binary;
using Vfio.Migration;
using Vfio.User.Protocol;
using Vfio.User.Server;
using Vfio.User.Transport;

namespace Vfio.IntegrationTests;

/// <summary>
/// A server connection's command and reply queues. Replies leave in command order however commands are mixed
/// (spec §3: "replies are sent in command order, so a client may pipeline"). A client that sends without reading
/// replies meets backpressure instead of growing the server's memory (VfioUserTuning.MaxQueuedCommands,
/// MaxQueuedReplies), and loses nothing once it reads.
/// </summary>
public sealed class ServerQueueTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private const int SmallChunk = 64 << 10;

    private const int BigChunk = 1 << 20;

    [Theory(Timeout = 60000)]
    [InlineData(true, false)]   // replies sent from device memory
    [InlineData(false, false)]  // computed replies
    [InlineData(true, true)]    // with a message-mode DMA mapping
    public async Task Pipelined_reads_and_other_commands_are_answered_in_command_order_spec_3(bool zeroCopy, bool messageModeDma)
    {
        TestContext.Current.CancellationToken.ThrowIfCancellationRequested();
        await using var fx = new ImageServer((20 * SmallChunk) + 1000, seed: 42, SmallChunk, zeroCopy);
        var image = fx.Image;
        using (var peer = new TestSupport.RawPeer(fx.Path))
        {
            peer.Negotiate();
            if (messageModeDma)
            {
                peer.Send(2, VfioUserCommand.DmaMap, new DmaMapPayload(DmaMapPayload.Length, DmaMapPayload.FlagRead | DmaMapPayload.FlagWrite, 0, 0x10000, 0x1000).Encode());
                Assert.False(peer.Receive()!.Value.Header.IsError);
            }
            peer.Send(3, VfioUserCommand.DeviceFeature, Feature(set: true, VfioMigrationState.StopCopy));
            Assert.False(peer.Receive()!.Value.Header.IsError);

            // One burst: 23 reads (the last two find the end of the stream) with a state query after every third.
            var burst = new List<byte>();
            var expected = new List<(ushort Id, VfioUserCommand Command)>();
            ushort id = 100;
            for (int i = 0; i < 23; i++)
            {
                var read = new byte[MigDataPayload.Length];
                new MigDataPayload(MigDataPayload.Length + SmallChunk, SmallChunk).Encode(read);
                burst.AddRange(VfioUserFrame.Build(id, VfioUserCommand.MigDataRead, VfioUserMessageFlags.Command, read));
                expected.Add((id++, VfioUserCommand.MigDataRead));
                if (i % 3 == 2)
                {
                    burst.AddRange(VfioUserFrame.Build(id, VfioUserCommand.DeviceFeature, VfioUserMessageFlags.Command, Feature(set: false, 0)));
                    expected.Add((id++, VfioUserCommand.DeviceFeature));
                }
            }
            peer.Send([.. burst]);

            var stream = new List<byte>();
            foreach (var (expectedId, command) in expected)
            {
                var (header, payload) = peer.Receive() ?? throw new InvalidOperationException("the server closed");
                Assert.Equal(expectedId, header.MessageId);
                Assert.Equal(command, header.Command);
                Assert.False(header.IsError);
                if (command == VfioUserCommand.MigDataRead)
                {
                    var head = MigDataPayload.Decode(payload, "reply");
                    stream.AddRange(payload.AsSpan(MigDataPayload.Length, (int)head.Size).ToArray());
                }
                else
                {
                    Assert.Equal((uint)VfioMigrationState.StopCopy, BinaryPrimitives.ReadUInt32LittleEndian(payload.AsSpan(8)));
                }
            }
            Assert.Equal(image, stream.ToArray());
        }
    }

    [Fact(Timeout = 60000)]
    public async Task A_client_that_does_not_read_stalls_the_stream_after_a_few_replies_and_loses_nothing()
    {
        TestContext.Current.CancellationToken.ThrowIfCancellationRequested();
        await using var fx = new ImageServer(64 * BigChunk, seed: 3, BigChunk, zeroCopy: false); // every reply is a computed 1 MiB buffer
        var image = fx.Image;
        var device = fx.Device;
        using (var peer = new TestSupport.RawPeer(fx.Path))
        {
            peer.Negotiate();
            peer.Send(2, VfioUserCommand.DeviceFeature, Feature(set: true, VfioMigrationState.StopCopy));
            Assert.False(peer.Receive()!.Value.Header.IsError);

            const int requests = 200; // more than the whole 64 MiB stream, and than every queue together
            var burst = new List<byte>();
            var read = new byte[MigDataPayload.Length];
            new MigDataPayload(MigDataPayload.Length + BigChunk, BigChunk).Encode(read);
            for (int i = 0; i < requests; i++)
                burst.AddRange(VfioUserFrame.Build((ushort)(100 + i), VfioUserCommand.MigDataRead, VfioUserMessageFlags.Command, read));
            peer.Send([.. burst]);

            // Without bounds the server would run through the whole stream into memory; with them it stops after
            // what the kernel's socket buffer holds, the queued replies, the one being sent and the one waiting.
            long taken = await WhenSettledAsync(() => device.CurrentSession!.BytesTransferred);
            long bound = GrantedSendBuffer() + ((long)(VfioUserTuning.MaxQueuedReplies + 2) * BigChunk);
            Assert.True(taken <= bound, $"the server produced {taken} bytes (bound {bound}) for a client that reads nothing");

            var stream = new List<byte>();
            for (int i = 0; i < requests; i++)
            {
                var (header, payload) = peer.Receive() ?? throw new InvalidOperationException("the server closed");
                Assert.Equal((ushort)(100 + i), header.MessageId);
                Assert.False(header.IsError);
                var head = MigDataPayload.Decode(payload, "reply");
                stream.AddRange(payload.AsSpan(MigDataPayload.Length, (int)head.Size).ToArray());
            }
            Assert.Equal(image, stream.ToArray());
        }
    }

    [Fact(Timeout = 60000)]
    public async Task Stopping_the_server_ends_a_connection_whose_client_reads_nothing()
    {
        TestContext.Current.CancellationToken.ThrowIfCancellationRequested();
        await using var fx = new ImageServer(64 * BigChunk, seed: 5, BigChunk, zeroCopy: false);
        using var peer = new TestSupport.RawPeer(fx.Path);
        peer.Negotiate();
        peer.Send(2, VfioUserCommand.DeviceFeature, Feature(set: true, VfioMigrationState.StopCopy));
        Assert.False(peer.Receive()!.Value.Header.IsError);
        var read = new byte[MigDataPayload.Length];
        new MigDataPayload(MigDataPayload.Length + BigChunk, BigChunk).Encode(read);
        var burst = new List<byte>();
        for (int i = 0; i < 200; i++)
            burst.AddRange(VfioUserFrame.Build((ushort)(100 + i), VfioUserCommand.MigDataRead, VfioUserMessageFlags.Command, read));
        peer.Send([.. burst]);
        await WhenSettledAsync(() => fx.Device.CurrentSession!.BytesTransferred); // every queue is full now

        // The read loop waits for room, the worker for the writer, the writer for the socket: all must give up.
        try
        {
            await fx.StopAsync().WaitAsync(TimeSpan.FromSeconds(10), Ct);
        }
        catch (OperationCanceledException) when (!Ct.IsCancellationRequested)
        {
        }
    }

    // An ImageDevice served on a temp path until disposed.
    private sealed class ImageServer : IAsyncDisposable
    {
        private readonly CancellationTokenSource _cts = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        private readonly VfioUserServer _server;
        private readonly Task _run;

        public ImageServer(int length, int seed, int chunk, bool zeroCopy)
        {
            Image = new byte[length];
            new Random(seed).NextBytes(Image);
            Device = new ZeroCopyStopCopyTests.ImageDevice(Image, chunk, zeroCopy);
            Path = TestSupport.TempSocketPath();
            _server = new VfioUserServer(Path, new VfioUserDeviceDefinition(Device, "image"));
            _server.Start();
            _run = _server.RunAsync(_cts.Token);
        }

        public byte[] Image { get; }

        public ZeroCopyStopCopyTests.ImageDevice Device { get; }

        public string Path { get; }

        /// <summary>Cancels the server; the task ends when it has stopped.</summary>
        public Task StopAsync()
        {
            _cts.Cancel();
            return _run;
        }

        public async ValueTask DisposeAsync()
        {
            _cts.Cancel();
            await _run.WaitAsync(TimeSpan.FromSeconds(10), Ct).ContinueWith(_ => { }, Ct);
            await _server.DisposeAsync();
            Device.Dispose();
            _cts.Dispose();
        }
    }

    // The send buffer every vfio-user socket gets here (the kernel's doubled figure).
    private static long GrantedSendBuffer()
    {
        var (a, b) = UnixFdSocket.CreateSocketPair();
        using var probe = new UnixFdSocket(a);
        using (b)
            return probe.SendBufferSize;
    }

    // Polls until the value has not changed for 300 ms (at most 10 s).
    private static async Task<long> WhenSettledAsync(Func<long> read)
    {
        long last = read();
        var stableSince = DateTime.UtcNow;
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (DateTime.UtcNow < deadline)
        {
            await Task.Delay(50, Ct);
            long now = read();
            if (now != last)
            {
                last = now;
                stableSince = DateTime.UtcNow;
            }
            else if (DateTime.UtcNow - stableSince > TimeSpan.FromMilliseconds(300))
            {
                break;
            }
        }
        return last;
    }

    // DEVICE_FEATURE MIG_DEVICE_STATE (feature 2): {argsz, flags, device_state, data_fd}.
    private static byte[] Feature(bool set, VfioMigrationState state)
    {
        var feature = new byte[16];
        BinaryPrimitives.WriteUInt32LittleEndian(feature, 16);
        BinaryPrimitives.WriteUInt32LittleEndian(feature.AsSpan(4), (set ? 0x20000u : 0x10000u) | 2);
        BinaryPrimitives.WriteUInt32LittleEndian(feature.AsSpan(8), (uint)state);
        BinaryPrimitives.WriteInt32LittleEndian(feature.AsSpan(12), -1);
        return feature;
    }
}
