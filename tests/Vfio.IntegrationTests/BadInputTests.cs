using System.Buffers.Binary;
using Vfio.User.Client;
using Vfio.User.Protocol;

namespace Vfio.IntegrationTests;

/// <summary>Malformed, truncated, oversized, out-of-order, unknown and wrong-state input against a live server.</summary>
public sealed class BadInputTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static void ExpectError(TestSupport.RawPeer peer, ushort id, VfioUserCommand cmd, Errno errno)
    {
        var r = peer.Receive();
        Assert.NotNull(r);
        Assert.Equal(id, r.Value.Header.MessageId);
        Assert.Equal(cmd, r.Value.Header.Command);
        Assert.True(r.Value.Header.IsError, $"expected {errno} for {cmd}");
        Assert.Equal((uint)errno, r.Value.Header.ErrorNo);
        Assert.Equal(16u, r.Value.Header.MessageSize); // header-only error replies
    }

    private static async Task AssertServerStillServesAsync(string path)
    {
        // GET MIG_DEVICE_STATE works in every state (a corpus file may have left the device in STOP).
        // Bounded: a server stuck on the previous client must fail the test, not hang the run.
        using var limit = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        limit.CancelAfter(TimeSpan.FromSeconds(30));
        await using var device = await VfioUserMigrationDevice.ConnectAsync(path, null, limit.Token);
        await device.GetStateAsync(limit.Token);
    }

    [Fact]
    public async Task First_message_not_version_gets_einval_and_a_close()
    {
        await using var fx = new TestSupport.ServerFixture();
        using (var peer = new TestSupport.RawPeer(fx.Path))
        {
            peer.Send(7, VfioUserCommand.DeviceGetInfo, new DeviceInfoPayload(16, 0, 0, 0).Encode());
            ExpectError(peer, 7, VfioUserCommand.DeviceGetInfo, Errno.EINVAL);
            Assert.True(peer.IsClosed());
        }
        await AssertServerStillServesAsync(fx.Path);
    }

    [Theory]
    [InlineData("{\"capabilities\":{\"max_msg_fds\":\"8\"}}", true)] // wrong JSON type
    [InlineData("{\"capabilities\":{\"max_msg_fds\":5000}}", true)]
    [InlineData("{\"capabilities\":{\"migration\":{\"pgsize\":65536}}}", true)]
    [InlineData("{\"capabilities\":{\"max_msg_fds\":8}}", false)] // no NUL terminator
    [InlineData("{\"capabilities\":[1,2]}", true)]
    [InlineData("not json", true)]
    public async Task Bad_version_json_gets_einval_and_a_close(string json, bool withNul)
    {
        await using var fx = new TestSupport.ServerFixture();
        using (var peer = new TestSupport.RawPeer(fx.Path))
        {
            var body = new byte[4 + json.Length + (withNul ? 1 : 0)];
            System.Text.Encoding.UTF8.GetBytes(json, body.AsSpan(4));
            BinaryPrimitives.WriteUInt16LittleEndian(body.AsSpan(2), 2);
            peer.Send(1, VfioUserCommand.Version, body);
            ExpectError(peer, 1, VfioUserCommand.Version, Errno.EINVAL);
            Assert.True(peer.IsClosed());
        }
        await AssertServerStillServesAsync(fx.Path);
    }

    [Fact]
    public async Task Malformed_commands_get_einval_and_the_connection_stays_in_sync()
    {
        await using var fx = new TestSupport.ServerFixture();
        using var peer = new TestSupport.RawPeer(fx.Path);
        peer.Negotiate();
        peer.Send(2, VfioUserCommand.Version, new VersionPayload(0, 2, null).Encode());
        ExpectError(peer, 2, VfioUserCommand.Version, Errno.EINVAL); // second VERSION
        peer.Send(3, (VfioUserCommand)99, new byte[8]);
        ExpectError(peer, 3, (VfioUserCommand)99, Errno.EINVAL); // unknown command, cmd echoed
        peer.Send(4, VfioUserCommand.DirtyPagesRetired, new byte[8]);
        ExpectError(peer, 4, VfioUserCommand.DirtyPagesRetired, Errno.EINVAL);
        peer.Send(5, VfioUserCommand.DeviceGetInfo, new byte[8]);
        ExpectError(peer, 5, VfioUserCommand.DeviceGetInfo, Errno.EINVAL); // truncated payload
        peer.Send(6, VfioUserCommand.DeviceGetInfo, Codec16(8, 0, 0, 0));
        ExpectError(peer, 6, VfioUserCommand.DeviceGetInfo, Errno.EINVAL); // argsz 8
        peer.Send(7, VfioUserCommand.DeviceGetInfo, ReadOnlySpan<byte>.Empty);
        ExpectError(peer, 7, VfioUserCommand.DeviceGetInfo, Errno.EINVAL); // no payload
        var read = new byte[16];
        new RegionAccessPayload(0, 99, 4).Encode(read);
        peer.Send(8, VfioUserCommand.RegionRead, read);
        ExpectError(peer, 8, VfioUserCommand.RegionRead, Errno.EINVAL); // region 99
        new RegionAccessPayload(ulong.MaxValue - 1, 0, 4).Encode(read);
        peer.Send(9, VfioUserCommand.RegionRead, read);
        ExpectError(peer, 9, VfioUserCommand.RegionRead, Errno.EINVAL); // out of bounds (overflow)
        var write = new byte[20];
        new RegionAccessPayload(0, 0, 8).Encode(write);
        peer.Send(10, VfioUserCommand.RegionWrite, write);
        ExpectError(peer, 10, VfioUserCommand.RegionWrite, Errno.EINVAL); // count ≠ data
        peer.Send(11, VfioUserCommand.DeviceGetRegionInfo, new RegionInfoPayload(32, 0, 9, 0, 0, 0).Encode());
        ExpectError(peer, 11, VfioUserCommand.DeviceGetRegionInfo, Errno.EINVAL);
        peer.Send(12, VfioUserCommand.DeviceGetIrqInfo, Codec16(16, 0, 5, 0));
        ExpectError(peer, 12, VfioUserCommand.DeviceGetIrqInfo, Errno.EINVAL);
        var mig = new byte[8];
        new MigDataPayload(8 + 4096, 4096).Encode(mig);
        peer.Send(13, VfioUserCommand.MigDataRead, mig);
        ExpectError(peer, 13, VfioUserCommand.MigDataRead, Errno.EINVAL); // wrong state (RUNNING)
        new MigDataPayload(8 + (2u << 20), 2u << 20).Encode(mig);
        peer.Send(14, VfioUserCommand.MigDataRead, mig);
        ExpectError(peer, 14, VfioUserCommand.MigDataRead, Errno.EINVAL); // beyond max_data_xfer_size
        var feature = new byte[16];
        BinaryPrimitives.WriteUInt32LittleEndian(feature, 16);
        BinaryPrimitives.WriteUInt32LittleEndian(feature.AsSpan(4), 0x20002);
        BinaryPrimitives.WriteUInt32LittleEndian(feature.AsSpan(8), 8);
        peer.Send(15, VfioUserCommand.DeviceFeature, feature);
        ExpectError(peer, 15, VfioUserCommand.DeviceFeature, Errno.EINVAL); // state 8
        BinaryPrimitives.WriteUInt32LittleEndian(feature.AsSpan(4), 0x30002);
        peer.Send(16, VfioUserCommand.DeviceFeature, feature);
        ExpectError(peer, 16, VfioUserCommand.DeviceFeature, Errno.EINVAL); // GET|SET
        BinaryPrimitives.WriteUInt32LittleEndian(feature.AsSpan(4), 0x80002);
        peer.Send(17, VfioUserCommand.DeviceFeature, feature);
        ExpectError(peer, 17, VfioUserCommand.DeviceFeature, Errno.EINVAL); // unknown flag bit
        peer.Send(18, VfioUserCommand.DeviceGetInfo, new DeviceInfoPayload(16, 0, 0, 0).Encode(), VfioUserMessageFlags.Reply);
        ExpectError(peer, 18, VfioUserCommand.DeviceGetInfo, Errno.EINVAL); // a reply from the client
        peer.Send(19, VfioUserCommand.DeviceGetInfo, new DeviceInfoPayload(16, 0, 0, 0).Encode(), VfioUserMessageFlags.Command | (VfioUserMessageFlags)0x100);
        ExpectError(peer, 19, VfioUserCommand.DeviceGetInfo, Errno.EINVAL); // reserved flag bit
        // A failing NO_REPLY command gets no reply; the next command's reply comes next.
        peer.Send(20, VfioUserCommand.DeviceGetInfo, new byte[8], VfioUserMessageFlags.NoReply);
        peer.Send(21, VfioUserCommand.DeviceGetInfo, new DeviceInfoPayload(4096, 0, 0, 0).Encode());
        var ok = peer.Receive();
        Assert.NotNull(ok);
        Assert.Equal(21, ok.Value.Header.MessageId);
        Assert.False(ok.Value.Header.IsError);
        Assert.Equal(16, ok.Value.Payload.Length);
        // REGION_READ count 0: success, empty payload.
        new RegionAccessPayload(0, 0, 0).Encode(read);
        peer.Send(22, VfioUserCommand.RegionRead, read);
        var empty = peer.Receive();
        Assert.NotNull(empty);
        Assert.False(empty.Value.Header.IsError);
        Assert.Empty(empty.Value.Payload);
    }

    [Fact]
    public async Task Wrong_state_commands_are_refused_in_stop_and_stop_copy()
    {
        await using var fx = new TestSupport.ServerFixture();
        await using (var device = await VfioUserMigrationDevice.ConnectAsync(fx.Path, null, Ct))
        {
            await device.SetStateAsync(Migration.VfioMigrationState.Stop, Ct);
            var ex = await Assert.ThrowsAsync<VfioException>(() => device.Client.GetDeviceInfoAsync(Ct));
            Assert.Equal(Errno.EINVAL, ex.Errno);
            await device.Client.RegionReadAsync(0, 0, new byte[16], Ct); // allowed in STOP
            await device.SetStateAsync(Migration.VfioMigrationState.StopCopy, Ct);
            ex = await Assert.ThrowsAsync<VfioException>(() => device.Client.RegionReadAsync(0, 0, new byte[16], Ct));
            Assert.Equal(Errno.EINVAL, ex.Errno);
            ex = await Assert.ThrowsAsync<VfioException>(async () => await device.SetStateAsync(Migration.VfioMigrationState.PreCopy, Ct));
            Assert.Equal(Errno.EINVAL, ex.Errno);

            // DEVICE_RESET is the exception to the gating: accepted in STOP_COPY, back to RUNNING (kernel §3.4).
            await device.Client.ResetAsync(Ct);
            Assert.Equal(Migration.VfioMigrationState.Running, await device.GetStateAsync(Ct));
            await device.SetStateAsync(Migration.VfioMigrationState.Stop, Ct);
            await device.Client.ResetAsync(Ct);
            Assert.Equal(Migration.VfioMigrationState.Running, await device.GetStateAsync(Ct));
        }
        await AssertServerStillServesAsync(fx.Path);
    }

    [Fact]
    public async Task Oversized_and_undersized_headers_get_einval_then_a_clean_disconnect()
    {
        await using var fx = new TestSupport.ServerFixture();
        foreach (uint size in new[] { 2u << 20, 8u, 0u })
        {
            using (var peer = new TestSupport.RawPeer(fx.Path))
            {
                peer.Negotiate();
                var header = new byte[16];
                new VfioUserHeader(42, VfioUserCommand.RegionWrite, size, VfioUserMessageFlags.Command, 0).Encode(header);
                peer.Send(header);
                ExpectError(peer, 42, VfioUserCommand.RegionWrite, Errno.EINVAL);
                Assert.True(peer.IsClosed());
            }
            await AssertServerStillServesAsync(fx.Path);
        }
    }

    [Fact]
    public async Task A_silent_client_is_dropped_after_the_handshake_timeout_so_the_next_one_is_served()
    {
        var path = TestSupport.TempSocketPath();
        using var device = new Vfio.Sample.SampleDevice(new Vfio.Sample.SampleDeviceOptions { SizeBytes = 64 << 10, Capabilities = Migration.VfioMigrationFlags.StopCopy | Migration.VfioMigrationFlags.PreCopy });
        await using var server = new Vfio.User.Server.VfioUserServer(path, Vfio.User.Server.VfioUserDeviceDefinition.ForSample(device),
            new Vfio.User.Server.VfioUserServerOptions { HandshakeTimeout = TimeSpan.FromMilliseconds(300) });
        using var cts = new CancellationTokenSource();
        server.Start();
        var run = server.RunAsync(cts.Token);
        using (var silent = new TestSupport.RawPeer(path))
        {
            silent.Send(new byte[5]); // part of a header, then nothing
            Assert.True(silent.IsClosed());
        }
        await AssertServerStillServesAsync(path);
        cts.Cancel();
        await run.WaitAsync(TimeSpan.FromSeconds(10), Ct);
    }

    [Fact]
    public async Task Truncated_message_then_eof_does_not_hang_the_server()
    {
        await using var fx = new TestSupport.ServerFixture();
        using (var peer = new TestSupport.RawPeer(fx.Path))
        {
            peer.Negotiate();
            var msg = VfioUserFrame.Build(3, VfioUserCommand.RegionRead, VfioUserMessageFlags.Command, new byte[16]);
            peer.Send(msg[..20]); // header promises 16 payload bytes, only 4 arrive
        }
        using (var peer = new TestSupport.RawPeer(fx.Path))
            peer.Send(new byte[7]); // half a header
        await AssertServerStillServesAsync(fx.Path);
    }

    [Fact]
    public async Task Fds_on_a_message_that_takes_none_are_refused_and_closed()
    {
        await using var fx = new TestSupport.ServerFixture();
        await using var client = await VfioUserClient.ConnectAsync(fx.Path, null, Ct);
        using var efd = TestSupport.EventFd();
        var ex = await Assert.ThrowsAsync<VfioException>(() => client.RequestAsync(VfioUserCommand.DeviceGetInfo, new DeviceInfoPayload(16, 0, 0, 0).Encode(), [efd], Ct));
        Assert.Equal(Errno.EINVAL, ex.Errno);
        // SET_IRQS with 2 fds for count 1: EINVAL.
        using var efd2 = TestSupport.EventFd();
        ex = await Assert.ThrowsAsync<VfioException>(() => client.SetIrqEventFdsAsync(0, 0, [efd, efd2], 1, Ct));
        Assert.Equal(Errno.EINVAL, ex.Errno);
        Assert.Equal(9u, (await client.GetDeviceInfoAsync(Ct)).NumRegions);
    }

    /// <summary>Replays every corpus file against a live server: each gets an answer or a clean close; the server survives.</summary>
    [Fact]
    public async Task Fuzz_corpus_against_a_live_server()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Vfio.slnx")))
            dir = dir.Parent;
        Assert.NotNull(dir);
        var files = Directory.GetFiles(Path.Combine(dir.FullName, "tests", "Vfio.Fuzz", "corpus"));
        Assert.NotEmpty(files);
        await using var fx = new TestSupport.ServerFixture();
        foreach (var file in files)
        {
            using (var peer = new TestSupport.RawPeer(fx.Path))
            {
                peer.Negotiate();
                peer.Send(await File.ReadAllBytesAsync(file, Ct));
                peer.Socket.Shutdown(System.Net.Sockets.SocketShutdown.Send);
                while (peer.Receive() is not null)
                {
                }
            }
            await AssertServerStillServesAsync(fx.Path);
            fx.Device.Reset();
        }
    }

    private static byte[] Codec16(uint a, uint b, uint c, uint d)
    {
        var x = new byte[16];
        BinaryPrimitives.WriteUInt32LittleEndian(x, a);
        BinaryPrimitives.WriteUInt32LittleEndian(x.AsSpan(4), b);
        BinaryPrimitives.WriteUInt32LittleEndian(x.AsSpan(8), c);
        BinaryPrimitives.WriteUInt32LittleEndian(x.AsSpan(12), d);
        return x;
    }
}
