using System.Buffers.Binary;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using Vfio.Migration;
using Vfio.Sample;
using Vfio.User.Client;
using Vfio.User.Protocol;
using Vfio.User.Server;
using Vfio.User.Transport;

namespace Vfio.IntegrationTests;

/// <summary>
/// The client receives MIG_DATA_READ data straight into the reader's buffer (spec §7.1 MIG_DATA_READ; §10.1 padded
/// replies). These tests pin what must not change with that: byte-exact streams for any reader buffer size, no
/// deadlock and no lost data when another command overtakes reads in flight, malformed replies still rejected.
/// </summary>
public sealed class MigDataReceiveTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Theory(Timeout = 120000)]
    [InlineData(1 << 20)]      // exactly one reply per read (the direct path)
    [InlineData(1000)]         // smaller than a reply: the rest goes through the overflow
    [InlineData(3 << 20)]      // larger than a reply
    [InlineData(4096 + 17)]    // odd size
    public async Task Stop_copy_stream_over_vfio_user_equals_the_in_process_stream(int readSize)
    {
        TestContext.Current.CancellationToken.ThrowIfCancellationRequested();
        await AssertServedStreamEqualsLocalAsync(new SampleDeviceOptions { SizeBytes = 8L << 20, Capabilities = VfioMigrationFlags.StopCopy, Seed = 7 }, readSize, null);
    }

    // The data reader resumes on the client's read loop (no thread hand-over per reply). A reader that then sends
    // another command and waits for its reply must not stall the loop that has to receive that reply.
    [Theory(Timeout = 60000)]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_reader_that_waits_on_another_command_after_every_read_neither_deadlocks_nor_loses_data(bool slowReader)
    {
        TestContext.Current.CancellationToken.ThrowIfCancellationRequested();
        await AssertServedStreamEqualsLocalAsync(new SampleDeviceOptions { SizeBytes = 6L << 20, Capabilities = VfioMigrationFlags.StopCopy, Seed = 11 }, 1 << 20, async remote =>
        {
            Assert.Equal(VfioMigrationState.StopCopy, await remote.GetStateAsync(Ct).AsTask().WaitAsync(TimeSpan.FromSeconds(20), Ct));
            if (slowReader)
                await Task.Delay(5, Ct);
        });
    }

    // The stream of a sample device served over a socketpair, read in readSize pieces (afterRead runs after each
    // read), must equal the stream of the same device in process.
    private static async Task AssertServedStreamEqualsLocalAsync(SampleDeviceOptions options, int readSize, Func<IVfioMigrationDevice, Task>? afterRead)
    {
        byte[] expected;
        using (var local = new SampleDevice(options))
        {
            await using var device = new InProcessMigrationDevice(local, "local");
            expected = await DigestStreamAsync(device, 1 << 16);
        }

        using var hosted = new SampleDevice(options);
        var (serverEnd, clientEnd) = UnixFdSocket.CreateSocketPair();
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        var serving = Task.Run(() => VfioUserServer.ServeConnectedSocketAsync(serverEnd, VfioUserDeviceDefinition.ForSample(hosted), null, cts.Token), Ct);
        await using (var remote = new VfioUserMigrationDevice(await VfioUserClient.ConnectAsync(clientEnd, "pair", null, Ct)))
            Assert.Equal(expected, await DigestStreamAsync(remote, readSize, afterRead));
        await serving.WaitAsync(TimeSpan.FromSeconds(30), Ct);
        serverEnd.Dispose();
    }

    // Each read in flight may hold a chunk in an overflow array, so the depth is what bounds that memory.
    [Theory]
    [InlineData(0)]
    [InlineData(VfioUserClientOptions.MaxPipelineDepth + 1)]
    public async Task A_pipeline_depth_outside_1_to_64_is_refused_before_connecting(int depth)
    {
        var path = TestSupport.TempSocketPath(); // nothing listens there: a connect attempt would fail with ENOENT
        var ex = await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => VfioUserClient.ConnectAsync(path, new VfioUserClientOptions { PipelineDepth = depth }, Ct));
        Assert.Contains("PipelineDepth must be 1..64", ex.Message, StringComparison.Ordinal);
    }

    [Fact(Timeout = 60000)]
    public async Task A_command_sent_while_reads_are_in_flight_neither_deadlocks_nor_loses_data()
    {
        TestContext.Current.CancellationToken.ThrowIfCancellationRequested();
        var (server, clientEnd) = UnixFdSocket.CreateSocketPair();
        using var serverSocket = server;
        var script = Task.Run(() => ServeStopCopy(server, totalBytes: 10_000), Ct);

        await using var device = new VfioUserMigrationDevice(await VfioUserClient.ConnectAsync(clientEnd, "scripted", new VfioUserClientOptions { MaxDataTransferBytes = 4096 }, Ct));
        await using var stream = await device.SetStateAsync(VfioMigrationState.StopCopy, Ct);
        Assert.NotNull(stream);
        var all = new List<byte>();
        var buffer = new byte[4096];
        int n = await stream.ReadAsync(buffer, Ct);
        all.AddRange(buffer.AsSpan(0, n).ToArray());
        // Three more reads are in flight and wait for a reader's buffer; this GET queues behind their replies.
        Assert.Equal(VfioMigrationState.StopCopy, await device.GetStateAsync(Ct).AsTask().WaitAsync(TimeSpan.FromSeconds(20), Ct));
        while ((n = await stream.ReadAsync(buffer, Ct)) > 0)
            all.AddRange(buffer.AsSpan(0, n).ToArray());
        Assert.Equal(10_000, all.Count);
        for (int i = 0; i < all.Count; i++)
            Assert.Equal((byte)(i % 253), all[i]);
        await device.DisposeAsync();
        await script.WaitAsync(TimeSpan.FromSeconds(30), Ct);
    }

    [Fact(Timeout = 60000)]
    public async Task A_reply_claiming_more_than_requested_is_EPROTO_and_the_connection_stays_in_sync()
    {
        TestContext.Current.CancellationToken.ThrowIfCancellationRequested();
        var (server, clientEnd) = UnixFdSocket.CreateSocketPair();
        using var serverSocket = server;
        var script = Task.Run(() => ServeStopCopy(server, totalBytes: 1 << 20, oversize: true), Ct);

        await using var device = new VfioUserMigrationDevice(await VfioUserClient.ConnectAsync(clientEnd, "scripted", new VfioUserClientOptions { MaxDataTransferBytes = 4096 }, Ct));
        await using var stream = await device.SetStateAsync(VfioMigrationState.StopCopy, Ct);
        var ex = await Assert.ThrowsAsync<VfioException>(async () => await stream!.ReadAsync(new byte[4096], Ct));
        Assert.Equal(Errno.EPROTO, ex.Errno);
        // The malformed reply was drained whole: the next command's reply is its own.
        Assert.Equal(VfioMigrationState.StopCopy, await device.GetStateAsync(Ct).AsTask().WaitAsync(TimeSpan.FromSeconds(20), Ct));
        await device.DisposeAsync();
        await script.WaitAsync(TimeSpan.FromSeconds(30), Ct);
    }

    [Theory(Timeout = 60000)]
    [InlineData(false)] // cancelled before the reply arrives: the data must never reach the buffer
    [InlineData(true)]  // cancelled while the data is being received into the buffer: wait for that to end
    public async Task A_cancelled_read_never_writes_into_the_callers_buffer_after_returning(bool midPayload)
    {
        TestContext.Current.CancellationToken.ThrowIfCancellationRequested();
        var (server, clientEnd) = UnixFdSocket.CreateSocketPair();
        using var serverSocket = server;
        var release = new TaskCompletionSource();
        var script = Task.Run(async () =>
        {
            // Handshake and the state change through the scripted server, then hold the first MIG_DATA_READ reply.
            ServeUntil(server, VfioUserCommand.MigDataRead, out var read, out var readBody);
            uint want = BinaryPrimitives.ReadUInt32LittleEndian(readBody.AsSpan(4));
            var reply = new byte[8 + want];
            BinaryPrimitives.WriteUInt32LittleEndian(reply, 8 + want);
            BinaryPrimitives.WriteUInt32LittleEndian(reply.AsSpan(4), want);
            reply.AsSpan(8).Fill(0x5A);
            var frame = VfioUserFrame.Build(read.MessageId, read.Command, VfioUserMessageFlags.Reply, reply, 0);
            int split = midPayload ? 16 + 8 + 1000 : 0;
            server.Send(frame, 0, split, SocketFlags.None);
            await release.Task;
            server.Send(frame, split, frame.Length - split, SocketFlags.None);
        }, Ct);

        var options = new VfioUserClientOptions { MaxDataTransferBytes = 4096, PipelineDepth = 1 };
        await using var device = new VfioUserMigrationDevice(await VfioUserClient.ConnectAsync(clientEnd, "scripted", options, Ct));
        await using var stream = await device.SetStateAsync(VfioMigrationState.StopCopy, Ct);
        var buffer = new byte[4096];
        buffer.AsSpan().Fill(0xEE);
        using var cancel = new CancellationTokenSource(TimeSpan.FromMilliseconds(200));
        var reading = stream!.ReadAsync(buffer, cancel.Token).AsTask();
        if (midPayload)
        {
            // The read loop is inside the payload now; the read may not return before the payload is complete.
            await Task.Delay(600, Ct);
            Assert.False(reading.IsCompleted);
            release.SetResult();
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => reading);
            var after = buffer.ToArray();
            await Task.Delay(200, Ct);
            Assert.Equal(after, buffer);
        }
        else
        {
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => reading);
            release.SetResult();
            await script.WaitAsync(TimeSpan.FromSeconds(10), Ct);
            await Task.Delay(300, Ct); // the reply has arrived by now: it went to the overflow
            Assert.All(buffer, b => Assert.Equal(0xEE, b));
        }
        await script.WaitAsync(TimeSpan.FromSeconds(10), Ct);
    }

    // Answers like ServeStopCopy until the first command of kind stop arrives, which it returns unanswered.
    private static void ServeUntil(Socket socket, VfioUserCommand stop, out VfioUserHeader header, out byte[] body)
    {
        uint state = 2;
        while (true)
        {
            var head = new byte[16];
            if (!Fill(socket, head))
                throw new EndOfStreamException();
            header = VfioUserHeader.Decode(head);
            body = new byte[header.MessageSize - 16];
            if (!Fill(socket, body))
                throw new EndOfStreamException();
            if (header.Command == stop)
                return;
            var reply = ControlReply(header.Command, body, ref state);
            socket.Send(VfioUserFrame.Build(header.MessageId, header.Command, VfioUserMessageFlags.Reply, reply, 0));
        }
    }

    private static async Task<byte[]> DigestStreamAsync(IVfioMigrationDevice device, int readSize, Func<IVfioMigrationDevice, Task>? afterRead = null)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        await using var stream = await device.SetStateAsync(VfioMigrationState.StopCopy, Ct) ?? throw new InvalidOperationException("no stream");
        var buffer = new byte[readSize];
        int n;
        while ((n = await stream.ReadAsync(buffer, Ct)) > 0)
        {
            sha.AppendData(buffer, 0, n);
            if (afterRead is not null)
                await afterRead(device);
        }
        return sha.GetHashAndReset();
    }

    // A libvfio-user-like server (spec §10.1): VERSION, caps 0x1, state RUNNING→STOP_COPY, then totalBytes of
    // pattern data over padded MIG_DATA_READ replies; GET state answers STOP_COPY. oversize: the first data reply
    // claims one byte more than was asked.
    private static void ServeStopCopy(Socket socket, int totalBytes, bool oversize = false)
    {
        uint state = 1;
        int sent = 0;
        while (true)
        {
            var head = new byte[16];
            if (!Fill(socket, head))
                return;
            var h = VfioUserHeader.Decode(head);
            var body = new byte[h.MessageSize - 16];
            if (!Fill(socket, body))
                return;
            byte[] reply;
            switch (h.Command)
            {
                case VfioUserCommand.MigDataRead:
                    uint want = BinaryPrimitives.ReadUInt32LittleEndian(body.AsSpan(4));
                    int give = (int)Math.Min(want, (uint)(totalBytes - sent));
                    reply = new byte[8 + want]; // padded to the requested size, as libvfio-user does
                    BinaryPrimitives.WriteUInt32LittleEndian(reply, (uint)(8 + give));
                    BinaryPrimitives.WriteUInt32LittleEndian(reply.AsSpan(4), oversize ? want + 1 : (uint)give);
                    for (int i = 0; i < give; i++)
                        reply[8 + i] = (byte)((sent + i) % 253);
                    sent += give;
                    oversize = false;
                    break;
                default:
                    reply = ControlReply(h.Command, body, ref state);
                    break;
            }
            socket.Send(VfioUserFrame.Build(h.MessageId, h.Command, VfioUserMessageFlags.Reply, reply, 0));
        }
    }

    // libvfio-user's VERSION reply text (spec §4.2), caps 0x1, GET state, SET echoed; anything else header-only.
    private static byte[] ControlReply(VfioUserCommand command, byte[] body, ref uint state)
    {
        if (command == VfioUserCommand.Version)
        {
            var json = Encoding.UTF8.GetBytes("{ \"capabilities\": { \"max_msg_fds\": 8, \"max_data_xfer_size\": 1048576, \"migration\": { \"pgsize\": 4096 } } }\0");
            var version = new byte[4 + json.Length];
            BinaryPrimitives.WriteUInt16LittleEndian(version.AsSpan(2), 2);
            json.CopyTo(version, 4);
            return version;
        }
        if (command != VfioUserCommand.DeviceFeature)
            return [];
        uint flags = BinaryPrimitives.ReadUInt32LittleEndian(body.AsSpan(4));
        var reply = body.Length >= 16 ? body[..16] : new byte[16];
        BinaryPrimitives.WriteUInt32LittleEndian(reply, 16);
        if ((flags & 0xffff) == 1)
            BinaryPrimitives.WriteUInt64LittleEndian(reply.AsSpan(8), 1);
        else if ((flags & 0x20000) != 0)
            state = BinaryPrimitives.ReadUInt32LittleEndian(body.AsSpan(8));
        else
            BinaryPrimitives.WriteUInt64LittleEndian(reply.AsSpan(8), state);
        return reply;
    }

    private static bool Fill(Socket socket, byte[] buffer)
    {
        int got = 0;
        while (got < buffer.Length)
        {
            int n;
            try
            {
                n = socket.Receive(buffer, got, buffer.Length - got, SocketFlags.None);
            }
            catch (SocketException)
            {
                return false;
            }
            if (n == 0)
                return false;
            got += n;
        }
        return true;
    }
}
