using System.Buffers.Binary;
using Vfio.Migration;
using Vfio.User.Protocol;
using Vfio.User.Server;

namespace Vfio.IntegrationTests;

/// <summary>
/// Replies leave in command order however commands are mixed (spec §3: "replies are sent in command order, so a
/// client may pipeline"): zero-copy and computed MIG_DATA_READ replies, state queries, with and without a
/// message-mode DMA mapping.
/// </summary>
public sealed class ServerReplyOrderTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private const int Chunk = 64 << 10;

    [Theory(Timeout = 60000)]
    [InlineData(true, false)]   // replies sent from device memory
    [InlineData(false, false)]  // computed replies
    [InlineData(true, true)]    // with a message-mode DMA mapping
    public async Task Pipelined_reads_and_other_commands_are_answered_in_command_order_spec_3(bool zeroCopy, bool messageModeDma)
    {
        TestContext.Current.CancellationToken.ThrowIfCancellationRequested();
        var image = new byte[(20 * Chunk) + 1000];
        new Random(42).NextBytes(image);
        using var device = new ZeroCopyStopCopyTests.ImageDevice(image, Chunk, zeroCopy);
        var path = TestSupport.TempSocketPath();
        await using var server = new VfioUserServer(path, new VfioUserDeviceDefinition(device, "image"));
        server.Start();
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        var run = server.RunAsync(cts.Token);
        using (var peer = new TestSupport.RawPeer(path))
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
                new MigDataPayload(MigDataPayload.Length + Chunk, Chunk).Encode(read);
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
        cts.Cancel();
        await run.WaitAsync(TimeSpan.FromSeconds(10), Ct).ContinueWith(_ => { }, Ct);
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
