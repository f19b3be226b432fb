using System.Buffers.Binary;
using System.Net.Sockets;
using System.Text;
using Vfio.Migration;
using Vfio.User.Client;
using Vfio.User.Protocol;
using Vfio.User.Transport;

namespace Vfio.IntegrationTests;

/// <summary>
/// Our client against a scripted peer that behaves like libvfio-user on the wire (spec §3, §4.2, §6.13, §10.1):
/// error replies with payload, padded MIG_DATA_READ replies, its exact VERSION reply text, EINVAL for MIG_DATA_SIZE.
/// </summary>
public sealed class LibVfioUserQuirkTests
{
        private sealed class ScriptedPeer(Socket socket)
    {
        public (VfioUserHeader Header, byte[] Payload) Receive()
        {
            var head = new byte[16];
            Fill(head);
            var h = VfioUserHeader.Decode(head);
            var body = new byte[h.MessageSize - 16];
            Fill(body);
            return (h, body);
        }

        public void Reply(VfioUserHeader request, ReadOnlySpan<byte> payload, uint errno = 0)
        {
            var flags = VfioUserMessageFlags.Reply | (errno != 0 ? VfioUserMessageFlags.Error : 0);
            socket.Send(VfioUserFrame.Build(request.MessageId, request.Command, flags, payload, errno));
        }

        private void Fill(byte[] buffer)
        {
            int got = 0;
            while (got < buffer.Length)
            {
                int n = socket.Receive(buffer, got, buffer.Length - got, SocketFlags.None);
                if (n == 0)
                    throw new EndOfStreamException();
                got += n;
            }
        }
    }

    [Fact(Timeout = 60000)]
    public async Task Client_tolerates_error_payloads_padding_and_libvfio_user_version_text()
    {
        var ct = TestContext.Current.CancellationToken;
        var (server, clientEnd) = UnixFdSocket.CreateSocketPair();
        using var serverSocket = server;
        var peer = new ScriptedPeer(server);
        var script = Task.Run(() =>
        {
            // VERSION: libvfio-user's exact reply text (json-c spacing), minor = min(client, 2).
            var (v, vp) = peer.Receive();
            Assert.Equal(VfioUserCommand.Version, v.Command);
            Assert.EndsWith("\0", Encoding.UTF8.GetString(vp.AsSpan(4)), StringComparison.Ordinal);
            var json = Encoding.UTF8.GetBytes("{ \"capabilities\": { \"max_msg_fds\": 8, \"max_data_xfer_size\": 1048576, \"migration\": { \"pgsize\": 4096 } } }\0");
            var reply = new byte[4 + json.Length];
            BinaryPrimitives.WriteUInt16LittleEndian(reply.AsSpan(2), 2);
            json.CopyTo(reply, 4);
            Assert.Equal(125, 16 + reply.Length);
            peer.Reply(v, reply);

            // GET MIGRATION → 0x5.
            var (m, _) = peer.Receive();
            var caps = new byte[16];
            BinaryPrimitives.WriteUInt32LittleEndian(caps, 16);
            BinaryPrimitives.WriteUInt32LittleEndian(caps.AsSpan(4), 0x10001);
            BinaryPrimitives.WriteUInt64LittleEndian(caps.AsSpan(8), 5);
            peer.Reply(m, caps);

            // SetState(STOP_COPY from RUNNING) = GET state, then SET: answer the SET with an error reply that
            // echoes the 16-byte request (libvfio-user does that).
            var (g, _) = peer.Receive();
            var state = new byte[16];
            BinaryPrimitives.WriteUInt32LittleEndian(state, 16);
            BinaryPrimitives.WriteUInt32LittleEndian(state.AsSpan(4), 0x10002);
            BinaryPrimitives.WriteUInt32LittleEndian(state.AsSpan(8), 2);
            peer.Reply(g, state);
            var (set, setPayload) = peer.Receive();
            Assert.Equal(0xffffffffu, BinaryPrimitives.ReadUInt32LittleEndian(setPayload.AsSpan(12)));
            peer.Reply(set, setPayload, errno: 22);
            var (g2, _) = peer.Receive(); // the client re-reads the state after a failed SET
            peer.Reply(g2, state);

            // Second attempt succeeds: the SET alone (echo), the state being known from the GET after the failure.
            var (set2, set2Payload) = peer.Receive();
            Assert.Equal(VfioUserCommand.DeviceFeature, set2.Command);
            Assert.Equal(0x20002u, BinaryPrimitives.ReadUInt32LittleEndian(set2Payload.AsSpan(4)));
            peer.Reply(set2, set2Payload);

            // MIG_DATA_READ ×N (pipelined): 3000 bytes of data in total, replies padded to 8 + requested.
            int remaining = 3000;
            while (true)
            {
                VfioUserHeader r;
                byte[] rp;
                try
                {
                    (r, rp) = peer.Receive();
                }
                catch (EndOfStreamException)
                {
                    break; // the client closed
                }
                if (r.Command != VfioUserCommand.MigDataRead)
                {
                    // GET MIG_DATA_SIZE (the client may probe it): libvfio-user answers EINVAL.
                    peer.Reply(r, [], errno: 22);
                    continue;
                }
                uint want = BinaryPrimitives.ReadUInt32LittleEndian(rp.AsSpan(4));
                int give = (int)Math.Min(want, (uint)remaining);
                remaining -= give;
                var data = new byte[8 + want];
                BinaryPrimitives.WriteUInt32LittleEndian(data, (uint)(8 + give));
                BinaryPrimitives.WriteUInt32LittleEndian(data.AsSpan(4), (uint)give);
                for (int i = 0; i < give; i++)
                    data[8 + i] = (byte)(i % 251);
                peer.Reply(r, data);
            }
        }, ct);

        await using var device = new VfioUserMigrationDevice(await VfioUserClient.ConnectAsync(clientEnd, "scripted", null, ct));
        Assert.Equal(2, device.Client.ServerMinor);
        Assert.Equal(VfioMigrationFlags.StopCopy | VfioMigrationFlags.PreCopy, await device.GetCapabilitiesAsync(ct));
        var failed = await Assert.ThrowsAsync<VfioException>(async () => await device.SetStateAsync(VfioMigrationState.StopCopy, ct));
        Assert.Equal(Errno.EINVAL, failed.Errno);
        // The error payload was drained: the stream is still in sync.
        await using var stream = await device.SetStateAsync(VfioMigrationState.StopCopy, ct);
        Assert.NotNull(stream);
        var all = new List<byte>();
        var buffer = new byte[1000];
        int n;
        while ((n = await stream.ReadAsync(buffer, ct)) > 0)
            all.AddRange(buffer.AsSpan(0, n).ToArray());
        Assert.Equal(3000, all.Count);
        for (int i = 0; i < all.Count; i++)
            Assert.Equal((byte)(i % 251), all[i]);
        await device.DisposeAsync();
        await script.WaitAsync(TimeSpan.FromSeconds(30), ct);
    }
}
