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

    // docs/vfio-user.md, MIG_DATA_WRITE: writes stay in flight across WriteAsync calls (up to a window), so a refused
    // write may surface on a later call; at the latest the next SET collects them and throws the refusal instead of
    // sending the SET. Two 64 KiB writes are two messages, within every window (at least the pipeline depth, 4), so
    // neither call waits and the refusal surfaces at the SET every time.
    [Fact(Timeout = 60000)]
    public async Task A_refused_write_surfaces_before_the_next_state_change_which_is_not_sent()
    {
        TestContext.Current.CancellationToken.ThrowIfCancellationRequested();
        using var hosted = new SampleDevice(new SampleDeviceOptions { SizeBytes = 8L << 20, Capabilities = VfioMigrationFlags.StopCopy, Seed = 5 });
        var (serverEnd, clientEnd) = UnixFdSocket.CreateSocketPair();
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        var serving = Task.Run(() => VfioUserServer.ServeConnectedSocketAsync(serverEnd, VfioUserDeviceDefinition.ForSample(hosted), null, cts.Token), Ct);
        await using (var remote = new VfioUserMigrationDevice(await VfioUserClient.ConnectAsync(clientEnd, "pair", null, Ct)))
        {
            var stream = await remote.SetStateAsync(VfioMigrationState.Resuming, Ct);
            Assert.NotNull(stream);
            var garbage = new byte[64 << 10];
            garbage.AsSpan().Fill(0xEE); // not a sample stream: the first record header is refused
            await stream.WriteAsync(garbage, Ct);
            await stream.WriteAsync(garbage, Ct);

            var ex = await Assert.ThrowsAsync<VfioException>(() => remote.SetStateAsync(VfioMigrationState.Stop, Ct).AsTask());
            Assert.Equal(Errno.EINVAL, ex.Errno);
            Assert.Contains("MigDataWrite", ex.Message, StringComparison.Ordinal);
            // The SET was not sent: the device is still RESUMING, its load refused.
            Assert.Equal(VfioMigrationState.Resuming, hosted.State);
            Assert.Equal(VfioMigrationState.Resuming, await remote.GetStateAsync(Ct));
        }
        await serving.WaitAsync(TimeSpan.FromSeconds(30), Ct);
        serverEnd.Dispose();
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

    // The read loop would wait for ever for the reader's buffer (ReaderWait infinite): the GET's reply is read only
    // because sending the GET released the replies queued before it.
    [Fact(Timeout = 60000)]
    public async Task A_command_sent_while_reads_are_in_flight_neither_deadlocks_nor_loses_data()
    {
        TestContext.Current.CancellationToken.ThrowIfCancellationRequested();
        var (server, clientEnd) = UnixFdSocket.CreateSocketPair();
        using var serverSocket = server;
        var script = Task.Run(() => ServeStopCopy(server, totalBytes: 10_000), Ct);

        var options = new VfioUserClientOptions { MaxDataTransferBytes = 4096, ReaderWait = Timeout.InfiniteTimeSpan };
        await using var device = new VfioUserMigrationDevice(await VfioUserClient.ConnectAsync(clientEnd, "scripted", options, Ct));
        await using var stream = await device.SetStateAsync(VfioMigrationState.StopCopy, Ct);
        Assert.NotNull(stream);
        var all = new List<byte>();
        var buffer = new byte[4096];
        int n;
        for (int i = 0; i < 2; i++) // the first read goes alone; the second, after a full one, starts the pipeline
        {
            n = await stream.ReadAsync(buffer, Ct);
            all.AddRange(buffer.AsSpan(0, n).ToArray());
        }
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

    // Pre-copy reads are pipelined only up to the device's last estimate (MIG_DATA_SIZE): a round that reads what the
    // estimate said leaves no request in flight, so no pre-copy data is left over to move inside the downtime. The
    // state is read before the first SET only (spec §6.12: a SET completes the transition before its reply); then
    // the stream continues byte-exact into STOP_COPY.
    [Fact(Timeout = 60000)]
    public async Task A_pre_copy_round_that_reads_the_estimate_leaves_no_read_in_flight_and_the_state_is_read_once()
    {
        TestContext.Current.CancellationToken.ThrowIfCancellationRequested();
        const int pre = (10 * 4096) + 100;
        var served = await MigrateThroughPreCopyScriptAsync(pre, 5000, async (saving, all) =>
        {
            var info = await saving.GetPrecopyInfoAsync(Ct);
            Assert.Equal((ulong)pre, info.DirtyBytes);
            await ReadUntilAsync(saving, all, (long)info.DirtyBytes);
        });
        Assert.Equal(11, served.PreCopyReads); // ceil(pre / 4096): none beyond the estimate
        Assert.Equal(1, served.StateGets);
    }

    // Reads still in flight when the emulated PRECOPY_INFO is asked hold data the device no longer counts: the
    // estimate must include it (else the engine switches over with it still to move), and nothing is lost. The
    // stop-copy that follows (300 bytes) takes one read: the first STOP_COPY read goes alone.
    [Fact(Timeout = 60000)]
    public async Task The_emulated_precopy_estimate_counts_the_data_of_reads_still_in_flight()
    {
        TestContext.Current.CancellationToken.ThrowIfCancellationRequested();
        const int pre = 20 * 4096;
        var served = await MigrateThroughPreCopyScriptAsync(pre, 300, async (saving, all) =>
        {
            await ReadUntilAsync(saving, all, 1); // no estimate yet: three more reads go out behind this one
            var info = await saving.GetPrecopyInfoAsync(Ct).AsTask().WaitAsync(TimeSpan.FromSeconds(20), Ct);
            Assert.Equal((ulong)(pre - all.Count), info.DirtyBytes);
            await ReadUntilAsync(saving, all, pre);
        });
        Assert.Equal(1, served.StopCopyReads);
    }

    // spec §6.13: a short MIG_DATA_READ reply is padded to the size asked. The first STOP_COPY read therefore asks for
    // what the device's last MIG_DATA_SIZE answer in pre-copy left unread plus room for what it dirtied since (half
    // as much again and 256 KiB, in whole pages), not a whole 1 MiB chunk; a stop-copy larger than that comes back
    // full and the rest is pipelined in whole chunks; without an answer the first read asks for a chunk. The stream is
    // byte-exact in every case.
    [Theory(Timeout = 60000)]
    [InlineData(true, 300, new[] { 256 << 10 })]                                        // a few bytes: one read, 256 KiB asked
    [InlineData(true, 600_000, new[] { 256 << 10, 1 << 20, 1 << 20, 1 << 20, 1 << 20 })] // more than asked: the rest pipelined
    [InlineData(false, 300, new[] { 1 << 20 })]                                         // no estimate: a whole chunk
    public async Task The_first_stop_copy_read_asks_for_the_last_estimate_plus_room_not_a_whole_chunk(bool asked, int stop, int[] expectedSizes)
    {
        TestContext.Current.CancellationToken.ThrowIfCancellationRequested();
        const int pre = 8 * 4096;
        IVfioMigrationDevice? remote = null;
        var served = await MigrateThroughPreCopyScriptAsync(pre, stop, async (saving, all) =>
        {
            await ReadUntilAsync(saving, all, pre);
            if (asked)
                Assert.Equal(0UL, await remote!.GetStopCopySizeAsync(Ct)); // what the engine asks at its switchover decision
        }, maxTransfer: 1 << 20, connected: d => remote = d);
        Assert.Equal(expectedSizes, served.StopCopyReadSizes);
    }

    // RUNNING>PRE_COPY, preCopy reads, PRE_COPY>STOP_COPY (which continues the stream), the rest read, then STOP; the
    // whole stream must be the script's pattern. The read loop would wait for ever for a reader's buffer.
    private static async Task<PreCopyScript> MigrateThroughPreCopyScriptAsync(int pre, int stop, Func<IMigrationDataStream, List<byte>, Task> preCopy, int maxTransfer = 4096, Action<IVfioMigrationDevice>? connected = null)
    {
        var (server, clientEnd) = UnixFdSocket.CreateSocketPair();
        using var serverSocket = server;
        var served = new PreCopyScript(pre, stop);
        var script = Task.Run(() => served.Serve(server), Ct);
        var options = new VfioUserClientOptions { MaxDataTransferBytes = maxTransfer, ReaderWait = Timeout.InfiniteTimeSpan };
        await using var device = new VfioUserMigrationDevice(await VfioUserClient.ConnectAsync(clientEnd, "scripted", options, Ct));
        connected?.Invoke(device);
        var all = new List<byte>();
        await using (var saving = await device.SetStateAsync(VfioMigrationState.PreCopy, Ct))
        {
            await preCopy(saving!, all);
            Assert.Null(await device.SetStateAsync(VfioMigrationState.StopCopy, Ct));
            await ReadUntilAsync(saving!, all, long.MaxValue);
        }
        await device.SetStateAsync(VfioMigrationState.Stop, Ct);
        Assert.Equal(pre + stop, all.Count);
        for (int i = 0; i < all.Count; i++)
        {
            if (all[i] != (byte)(i % 253))
                Assert.Fail($"stream byte {i} is {all[i]}, expected {(byte)(i % 253)}");
        }
        await device.DisposeAsync();
        await script.WaitAsync(TimeSpan.FromSeconds(30), Ct);
        return served;
    }

    // Reads in 4 KiB pieces until the stream holds `until` bytes or ends.
    private static async Task ReadUntilAsync(IMigrationDataStream stream, List<byte> all, long until)
    {
        var buffer = new byte[4096];
        int n;
        while (all.Count < until && (n = await stream.ReadAsync(buffer, Ct)) > 0)
            all.AddRange(buffer.AsSpan(0, n).ToArray());
    }

    // A device with caps STOP_COPY|PRE_COPY (0x5) as libvfio-user has: pre bytes of pre-copy data, then stop bytes in
    // STOP_COPY (one pattern across both), MIG_DATA_SIZE (feature 9) answering what is left in the current state,
    // padded MIG_DATA_READ replies; it counts the reads in each state and the GETs of the state.
    private sealed class PreCopyScript(int pre, int stop)
    {
        private int _sent;

        public int PreCopyReads { get; private set; }

        public int StateGets { get; private set; }

        public int StopCopyReads => StopCopyReadSizes.Count;

        public List<int> StopCopyReadSizes { get; } = [];

        public void Serve(Socket socket)
        {
            uint state = 2;
            while (ReceiveCommand(socket, out var h, out var body))
            {
                int available = state switch { 6 => pre - _sent, 3 => pre + stop - _sent, _ => 0 };
                byte[] reply;
                if (h.Command == VfioUserCommand.MigDataRead)
                {
                    uint want = BinaryPrimitives.ReadUInt32LittleEndian(body.AsSpan(4));
                    int give = (int)Math.Min(want, (uint)available);
                    if (state == 6)
                        PreCopyReads++;
                    else if (state == 3)
                        StopCopyReadSizes.Add((int)want);
                    reply = PaddedReadReply(want, give, _sent, (uint)give);
                    _sent += give;
                }
                else if (h.Command == VfioUserCommand.DeviceFeature && (BinaryPrimitives.ReadUInt32LittleEndian(body.AsSpan(4)) & 0xffff) == 9)
                {
                    reply = body[..16];
                    BinaryPrimitives.WriteUInt32LittleEndian(reply, 16);
                    BinaryPrimitives.WriteUInt64LittleEndian(reply.AsSpan(8), (ulong)available);
                }
                else
                {
                    if (h.Command == VfioUserCommand.DeviceFeature && BinaryPrimitives.ReadUInt32LittleEndian(body.AsSpan(4)) == 0x10002)
                        StateGets++;
                    reply = ControlReply(h.Command, body, ref state, caps: 0x5);
                }
                socket.Send(VfioUserFrame.Build(h.MessageId, h.Command, VfioUserMessageFlags.Reply, reply, 0));
            }
        }
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
            if (!ReceiveCommand(socket, out header, out body))
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
        while (ReceiveCommand(socket, out var h, out var body))
        {
            byte[] reply;
            switch (h.Command)
            {
                case VfioUserCommand.MigDataRead:
                    uint want = BinaryPrimitives.ReadUInt32LittleEndian(body.AsSpan(4));
                    int give = (int)Math.Min(want, (uint)(totalBytes - sent));
                    reply = PaddedReadReply(want, give, sent, oversize ? want + 1 : (uint)give);
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

    // One command from the client; false once it closed.
    private static bool ReceiveCommand(Socket socket, out VfioUserHeader header, out byte[] body)
    {
        var head = new byte[16];
        header = default;
        body = [];
        if (!Fill(socket, head))
            return false;
        header = VfioUserHeader.Decode(head);
        body = new byte[header.MessageSize - 16];
        return Fill(socket, body);
    }

    // A MIG_DATA_READ reply padded to the requested size, as libvfio-user sends it: give bytes of the pattern from
    // stream offset at, the head claiming `claim` bytes.
    private static byte[] PaddedReadReply(uint want, int give, int at, uint claim)
    {
        var reply = new byte[8 + want];
        BinaryPrimitives.WriteUInt32LittleEndian(reply, (uint)(8 + give));
        BinaryPrimitives.WriteUInt32LittleEndian(reply.AsSpan(4), claim);
        for (int i = 0; i < give; i++)
            reply[8 + i] = (byte)((at + i) % 253);
        return reply;
    }

    // libvfio-user's VERSION reply text (spec §4.2), caps (0x1 unless told), GET state, SET echoed; anything else header-only.
    private static byte[] ControlReply(VfioUserCommand command, byte[] body, ref uint state, ulong caps = 0x1)
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
            BinaryPrimitives.WriteUInt64LittleEndian(reply.AsSpan(8), caps);
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
