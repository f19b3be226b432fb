using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using Vfio.Interop;
using Vfio.User.Protocol;
using Vfio.User.Transport;

namespace Vfio.IntegrationTests;

/// <summary>
/// libvfio-user's <c>samples/client</c> re-enacted against <c>vfio-mig serve --device libvfio-user-sample</c> (two
/// child processes, the second as the destination at <c>&lt;sock&gt;_migrated</c>), step by step as spec §12 lists
/// them, with the exact reply sizes and checks the C client makes. Each assertion names its step.
/// </summary>
public sealed class SamplesClientMigrationTests
{
    private static readonly TimeSpan Startup = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan IrqWait = TimeSpan.FromSeconds(30);
    private const int Page = 4096;
    private const int Bar1Size = 0x4000;
    private const int Xfer = 1024; // samples/client's max_data_xfer_size
    private const uint SetState = 0x20002, LoggingStart = 0x20006, LoggingStop = 0x20007, LoggingReport = 0x10008;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Samples_client_sequence_runs_to_the_end_with_migration_spec_12()
    {
        string path = TestSupport.TempSocketPath();
        string migrated = path + "_migrated";
        using var srcServer = new TestSupport.CliProcess("serve", "--socket", path, "--device", "libvfio-user-sample");
        using var dstServer = new TestSupport.CliProcess("serve", "--socket", migrated, "--device", "libvfio-user-sample");
        await srcServer.WaitForOutputAsync("serving libvfio-user-sample device", Startup);
        await dstServer.WaitForOutputAsync("serving libvfio-user-sample device", Startup);

        using var memfd = TestSupport.MemFd(64 * Page);
        using var src = await SamplesClientPeer.ConnectAsync(path, memfd);

        // Step 1: VERSION; the reply's JSON is NUL-terminated, has no twin_socket, and sizes the DMA map count.
        int serverMaxFds = await src.NegotiateAsync("step 1");
        int pages = 2 * serverMaxFds;
        Assert.True(pages * Page <= 64 * Page, "step 1: max_msg_fds larger than this test's memfd");

        // Step 2: a region that does not exist.
        Assert.Equal(Errno.EINVAL, await src.ErrorAsync(VfioUserCommand.RegionRead, Access(0xdeadbeef, 4), "step 2"));

        // Step 3: DEVICE_GET_INFO, exactly 16 bytes, 9 regions.
        var info = await src.ExactAsync(VfioUserCommand.DeviceGetInfo, new DeviceInfoPayload(16, 0, 0, 0).Encode(), 16, "step 3");
        Assert.True(BinaryPrimitives.ReadUInt32LittleEndian(info.AsSpan(8)) == 9, "step 3: num_regions must be 9");

        // Step 4: GET_REGION_INFO with argsz 32 and no fd buffer: exactly 32 bytes, no fd, no retry (argsz ≤ 32).
        for (uint i = 0; i < 9; i++)
        {
            var region = RegionInfoPayload.Decode(await src.ExactAsync(VfioUserCommand.DeviceGetRegionInfo, new RegionInfoPayload(32, 0, i, 0, 0, 0).Encode(), 32, $"step 4 (region {i})"));
            Assert.True(region.Argsz <= 32, $"step 4: region {i} asks for a {region.Argsz}-byte retry with caps");
            ulong expected = i switch { 0 => 8, 1 => Bar1Size, 7 => 256, _ => 0 };
            Assert.True(region.Size == expected, $"step 4: region {i} size {region.Size}, expected {expected}");
        }

        // Step 5: config space identity.
        var config = await src.ExactAsync(VfioUserCommand.RegionRead, Access(7, 64), 16 + 64, "step 5");
        Assert.True(BinaryPrimitives.ReadUInt16LittleEndian(config.AsSpan(16)) == 0xdead, "step 5: vendor");
        Assert.True(BinaryPrimitives.ReadUInt16LittleEndian(config.AsSpan(18)) == 0xbeef, "step 5: device");
        Assert.True(BinaryPrimitives.ReadUInt16LittleEndian(config.AsSpan(16 + 0x2c)) == 0xcafe, "step 5: subsystem vendor");
        Assert.True(BinaryPrimitives.ReadUInt16LittleEndian(config.AsSpan(16 + 0x2e)) == 0xbabe, "step 5: subsystem id");

        // Step 6: DEVICE_RESET, header-only.
        await src.ExactAsync(VfioUserCommand.DeviceReset, [], 0, "step 6");

        // Step 7: 2 × max_msg_fds single-page DMA maps, offset = IOVA, one shared fd.
        for (int i = 0; i < pages; i++)
            await src.MapAsync(i, "step 7");

        // Steps 8, 9: IRQ info for all five indexes, INTx on an eventfd.
        using var srcIrq = TestSupport.EventFd();
        await src.ConfigureIrqsAsync(srcIrq, "steps 8-9");

        // Step 10: DMA logging on, 0 ranges: the 24-byte request echoed.
        var start = SamplesClientSequenceTests.Feature(24, LoggingStart, (ulong)Page, 0);
        AssertEcho(start, await src.ExactAsync(VfioUserCommand.DeviceFeature, start, 24, "step 10"), "step 10: echo");

        // Step 11: BAR0 := now + 1 (schedules the INTx), read back.
        await src.WriteBar0Async(DateTimeOffset.UtcNow.ToUnixTimeSeconds() + 1, "step 11");
        await src.ExactAsync(VfioUserCommand.RegionRead, Access(0, 8), 16 + 8, "step 11 (read)");

        // Steps 12, 13: INTx, then exactly 4 DMA_WRITE and 4 DMA_READ into the first half of the pages.
        await WaitForIrqAsync(srcIrq, "step 12");
        var written = await src.ServeDmaAsync(0, (ulong)(serverMaxFds * Page), "step 13");

        // Step 14: a dirty report per page; pages 0 and 1 dirty once the client ORs in the pages it saw DMA_WRITEs
        // for, and page 1 (written only through the server's mmap) must come from the server.
        for (int i = 0; i < pages; i++)
        {
            var report = await src.ExactAsync(VfioUserCommand.DeviceFeature, SamplesClientSequenceTests.Feature(40, LoggingReport, (ulong)(i * Page), (ulong)Page, (ulong)Page), 40, $"step 14 (page {i})");
            bool serverBit = (BinaryPrimitives.ReadUInt64LittleEndian(report.AsSpan(32)) & 1) != 0;
            bool dirty = serverBit || written.Contains((ulong)(i * Page));
            if (i is 0 or 1)
                Assert.True(dirty, $"step 14: page {i} must be dirty");
            if (i == 1)
                Assert.True(serverBit, "step 14: page 1 was written only directly, so the server must report it");
        }
        Assert.True(TestSupport.ReadMemFd(memfd, Page, 8).Any(b => b != 0), "step 13: the direct write did not reach page 1 of the shared memory");

        // Step 15: logging off, 24-byte echo.
        await src.ExactAsync(VfioUserCommand.DeviceFeature, SamplesClientSequenceTests.Feature(24, LoggingStop, (ulong)Page, 0), 24, "step 15");

        // Step 16: unmap the first max_msg_fds pages, each a 24-byte echo.
        for (int i = 0; i < serverMaxFds; i++)
        {
            var unmap = new DmaUnmapPayload(24, 0, (ulong)(i * Page), Page).Encode();
            AssertEcho(unmap, await src.ExactAsync(VfioUserCommand.DmaUnmap, unmap, 24, "step 16"), "step 16: echo");
        }

        // Step 17: the INTx that must survive the migration (samples/client uses now + 10; less keeps the test short).
        long due = DateTimeOffset.UtcNow.ToUnixTimeSeconds() + 4;
        await src.WriteBar0Async(due, "step 17");

        // Step 18: a guest thread keeps rewriting BAR1 while the main thread enters PRE_COPY.
        using var guestStop = new CancellationTokenSource();
        var guest = Task.Run(() => src.FakeGuestAsync(guestStop.Token), Ct);
        await Task.Delay(50, Ct);
        await src.SetStateAsync(6, "step 18 (PRE_COPY)");

        // Step 19: 16 pre-copy reads of 1024 bytes, each padded to 8 + 1024 with size > 0.
        for (int i = 0; i < Bar1Size / Xfer; i++)
            await src.MigDataReadAsync($"step 19 (read {i + 1})");
        await guestStop.CancelAsync();
        byte[] lastBar1 = await guest;

        // Step 20: STOP_COPY, 17 reads (BAR1 ‖ BAR0), STOP.
        await src.SetStateAsync(3, "step 20 (STOP_COPY)");
        var stream = new List<byte>();
        for (int i = 0; i < (Bar1Size / Xfer) + 1; i++)
            stream.AddRange(await src.MigDataReadAsync($"step 20 (read {i + 1})"));
        await src.SetStateAsync(1, "step 20 (STOP)");
        Assert.True(stream.Count == Bar1Size + 8, $"step 20: {stream.Count} stop-copy bytes, the sample streams BAR1 ‖ BAR0 = {Bar1Size + 8}");
        Assert.True(lastBar1.AsSpan().SequenceEqual(stream.ToArray().AsSpan(0, Bar1Size)), "step 20: stop-copy BAR1 is not the guest's last write");
        Assert.True(BinaryPrimitives.ReadInt64LittleEndian(stream.ToArray().AsSpan(Bar1Size)) == due, "step 20: stop-copy BAR0 is not the time of step 17");

        // Step 21: the destination: VERSION, RESUMING, 17 MIG_DATA_WRITEs (the last one 8 bytes), STOP.
        using var dst = await SamplesClientPeer.ConnectAsync(migrated, memfd);
        await dst.NegotiateAsync("step 21 (VERSION)");
        await dst.SetStateAsync(4, "step 21 (RESUMING)");
        var bytes = stream.ToArray();
        for (int at = 0; at < bytes.Length; at += Xfer)
            await dst.MigDataWriteAsync(bytes.AsSpan(at, Math.Min(Xfer, bytes.Length - at)).ToArray(), "step 21 (MIG_DATA_WRITE)");
        await dst.SetStateAsync(1, "step 21 (STOP)");

        // Step 22: BAR1 arrived (samples/client compares CRCs).
        var bar1 = await dst.ExactAsync(VfioUserCommand.RegionRead, Access(1, Bar1Size), 16 + Bar1Size, "step 22");
        Assert.True(Crc32C.Compute(bar1.AsSpan(16)) == Crc32C.Compute(lastBar1), "step 22: destination BAR1 CRC differs from the source guest's last write");

        // Step 23: RUNNING re-arms the migrated INTx.
        await dst.SetStateAsync(2, "step 23");

        // Step 24: map the other max_msg_fds pages, IRQ info, INTx eventfd.
        for (int i = serverMaxFds; i < pages; i++)
            await dst.MapAsync(i, "step 24");
        using var dstIrq = TestSupport.EventFd();
        await dst.ConfigureIrqsAsync(dstIrq, "step 24");

        // Step 25: the migrated INTx fires on the destination, DMA goes into the newly mapped pages.
        await WaitForIrqAsync(dstIrq, "step 25");
        Assert.True(DateTimeOffset.UtcNow.ToUnixTimeSeconds() >= due, "step 25: the destination fired before the migrated time");
        await dst.ServeDmaAsync((ulong)(serverMaxFds * Page), (ulong)(pages * Page), "step 25");
        Assert.True(TestSupport.ReadMemFd(memfd, (serverMaxFds + 1) * Page, 8).Any(b => b != 0), "step 25: the direct write did not reach the second newly mapped page");

        // Step 26: unmap all, 24-byte echo.
        var all = new DmaUnmapPayload(24, DmaUnmapPayload.FlagAll, 0, 0).Encode();
        AssertEcho(all, await dst.ExactAsync(VfioUserCommand.DmaUnmap, all, 24, "step 26"), "step 26: echo");

        // Step 20 again: STOP_COPY stopped the source's timer; its INTx time has passed and it sent nothing.
        Assert.True(src.Socket.Socket.Available == 0, "step 20: the source did DMA after STOP_COPY (its IRQ timer still ran)");
        Assert.False(srcServer.Process.HasExited || dstServer.Process.HasExited, $"a server exited; stderr: {srcServer.Error} {dstServer.Error}");
    }

    private static void AssertEcho(byte[] request, byte[] reply, string what)
        => Assert.True(request.AsSpan().SequenceEqual(reply), what);

    private static byte[] Access(uint region, uint count)
    {
        var b = new byte[RegionAccessPayload.Length];
        new RegionAccessPayload(0, region, count).Encode(b);
        return b;
    }

    private static async Task WaitForIrqAsync(SafeFdHandle eventFd, string step)
    {
        var read = Task.Run(() => TestSupport.ReadEventFd(eventFd), Ct);
        try
        {
            Assert.True(await read.WaitAsync(IrqWait, Ct) >= 1, $"{step}: eventfd read 0");
        }
        catch (TimeoutException)
        {
            SignalEventFd(eventFd); // unblock the reader thread
            Assert.Fail($"{step}: no INTx within {IrqWait}");
        }
    }

    private static unsafe void SignalEventFd(SafeFdHandle eventFd)
    {
        ulong one = 1;
        Interop.Interop.Write(eventFd.Fd, (byte*)&one, 8);
    }

    /// <summary>The client side of samples/client: one socket, fixed-length replies, DMA served from one memfd.</summary>
    private sealed class SamplesClientPeer : IDisposable
    {
        private readonly SafeFdHandle _memory;
        private readonly SemaphoreSlim _mutex = new(1, 1); // samples/client's access_region mutex
        private ushort _nextId = 0x100;

        private SamplesClientPeer(UnixFdSocket socket, SafeFdHandle memory)
        {
            Socket = socket;
            _memory = memory;
        }

        public UnixFdSocket Socket { get; }

        public static async Task<SamplesClientPeer> ConnectAsync(string path, SafeFdHandle memory)
            => new(await UnixFdSocket.ConnectAsync(path, Ct), memory);

        public async Task<int> NegotiateAsync(string step)
        {
            var json = Encoding.UTF8.GetBytes("{\"capabilities\":{\"max_msg_fds\":32,\"max_data_xfer_size\":1024}}\0");
            var body = new byte[4 + json.Length];
            BinaryPrimitives.WriteUInt16LittleEndian(body.AsSpan(2), 2);
            json.CopyTo(body, 4);
            var reply = await RequestAsync(VfioUserCommand.Version, body, null);
            Assert.False(reply.Header.IsError, $"{step}: VERSION refused");
            var p = reply.Payload;
            Assert.True(BinaryPrimitives.ReadUInt16LittleEndian(p) == 0 && BinaryPrimitives.ReadUInt16LittleEndian(p.AsSpan(2)) <= 2, $"{step}: version must be 0.≤2");
            Assert.True(p[^1] == 0, $"{step}: the JSON must end in NUL");
            using var doc = JsonDocument.Parse(p.AsMemory(4, p.Length - 5));
            var caps = doc.RootElement.GetProperty("capabilities");
            Assert.False(caps.TryGetProperty("twin_socket", out _), $"{step}: twin_socket was not asked for");
            Assert.True(caps.GetProperty("max_data_xfer_size").GetInt64() >= Xfer, $"{step}: max_data_xfer_size below 1024");
            if (caps.TryGetProperty("migration", out var migration))
                Assert.Equal(JsonValueKind.Number, migration.GetProperty("pgsize").ValueKind);
            int maxFds = caps.GetProperty("max_msg_fds").GetInt32();
            Assert.True(maxFds >= 1, $"{step}: max_msg_fds must be ≥ 1");
            return maxFds;
        }

        public async Task<byte[]> ExactAsync(VfioUserCommand command, byte[] payload, int expected, string step, IReadOnlyList<SafeHandle>? fds = null)
        {
            var reply = await RequestAsync(command, payload, fds);
            Assert.False(reply.Header.IsError, $"{step}: {command} failed with errno {reply.Header.ErrorNo}");
            Assert.True(reply.Payload.Length == expected, $"{step}: {command} reply payload {reply.Payload.Length} bytes, samples/client reads exactly {expected}");
            Assert.True(reply.FdCount == 0, $"{step}: {command} reply carries {reply.FdCount} fds");
            return reply.Payload;
        }

        public async Task<Errno> ErrorAsync(VfioUserCommand command, byte[] payload, string step)
        {
            var reply = await RequestAsync(command, payload, null);
            Assert.True(reply.Header.IsError, $"{step}: {command} succeeded");
            return (Errno)reply.Header.ErrorNo;
        }

        public Task<byte[]> MapAsync(int page, string step)
            => ExactAsync(VfioUserCommand.DmaMap, new DmaMapPayload(32, DmaMapPayload.FlagRead | DmaMapPayload.FlagWrite, (ulong)(page * Page), (ulong)(page * Page), Page).Encode(), 0, step, [_memory]);

        public async Task ConfigureIrqsAsync(SafeFdHandle eventFd, string step)
        {
            for (uint i = 0; i < 5; i++)
                await ExactAsync(VfioUserCommand.DeviceGetIrqInfo, new IrqInfoPayload(16, 0, i, 0).Encode(), 16, $"{step} (IRQ info {i})");
            await ExactAsync(VfioUserCommand.DeviceSetIrqs, new SetIrqsPayload(20, SetIrqsPayload.ActionTrigger | SetIrqsPayload.DataEventFd, 0, 0, 1).Encode(), 0, $"{step} (SET_IRQS)", [eventFd]);
        }

        public async Task WriteBar0Async(long time, string step)
        {
            var write = new byte[24];
            new RegionAccessPayload(0, 0, 8).Encode(write);
            BinaryPrimitives.WriteInt64LittleEndian(write.AsSpan(16), time);
            var reply = await ExactAsync(VfioUserCommand.RegionWrite, write, 16, step);
            Assert.True(BinaryPrimitives.ReadUInt32LittleEndian(reply.AsSpan(12)) == 8, $"{step}: REGION_WRITE reply count must be 8");
        }

        public async Task SetStateAsync(uint state, string step)
        {
            var request = new byte[16];
            BinaryPrimitives.WriteUInt32LittleEndian(request, 16);
            BinaryPrimitives.WriteUInt32LittleEndian(request.AsSpan(4), SetState);
            BinaryPrimitives.WriteUInt32LittleEndian(request.AsSpan(8), state);
            BinaryPrimitives.WriteUInt32LittleEndian(request.AsSpan(12), 0xffffffff);
            AssertEcho(request, await ExactAsync(VfioUserCommand.DeviceFeature, request, 16, step), $"{step}: the SET reply must be the request byte for byte");
        }

        public async Task<byte[]> MigDataReadAsync(string step)
        {
            var request = new byte[8];
            new MigDataPayload(8 + Xfer, Xfer).Encode(request);
            var reply = await ExactAsync(VfioUserCommand.MigDataRead, request, 8 + Xfer, step);
            uint size = BinaryPrimitives.ReadUInt32LittleEndian(reply.AsSpan(4));
            Assert.True(size > 0, $"{step}: MIG_DATA_READ returned no data");
            return reply.AsSpan(8, (int)size).ToArray();
        }

        public async Task MigDataWriteAsync(byte[] data, string step)
        {
            var request = new byte[8 + data.Length];
            new MigDataPayload((uint)request.Length, (uint)data.Length).Encode(request);
            data.CopyTo(request, 8);
            var reply = await RequestAsync(VfioUserCommand.MigDataWrite, request, null);
            Assert.False(reply.Header.IsError, $"{step}: MIG_DATA_WRITE failed with errno {reply.Header.ErrorNo}");
            Assert.True(reply.Payload.Length is 0 or 8, $"{step}: reply of {reply.Payload.Length} bytes; header-only (or 8) expected");
        }

        // samples/client's fake_guest: random BAR1 content, REGION_WRITE after REGION_WRITE until told to stop.
        public async Task<byte[]> FakeGuestAsync(CancellationToken stop)
        {
            var data = new byte[Bar1Size];
            var request = new byte[16 + Bar1Size];
            new RegionAccessPayload(0, 1, Bar1Size).Encode(request);
            do
            {
                Random.Shared.NextBytes(data);
                data.CopyTo(request, 16);
                await ExactAsync(VfioUserCommand.RegionWrite, request, 16, "step 18 (guest BAR1 write)");
            }
            while (!stop.IsCancellationRequested);
            return data;
        }

        // samples/client's handle_dma_io: 4096 / 1024 DMA_WRITEs, then as many DMA_READs, served from the memfd
        // (offset = IOVA). Returns the pages the DMA_WRITE messages touched.
        public async Task<HashSet<ulong>> ServeDmaAsync(ulong low, ulong high, string step)
        {
            var pages = new HashSet<ulong>();
            for (int i = 0; i < 2 * (Page / Xfer); i++)
            {
                var expected = i < Page / Xfer ? VfioUserCommand.DmaWrite : VfioUserCommand.DmaRead;
                VfioUserHeader h;
                byte[] payload;
                using (var message = await Socket.ReceiveAsync(Ct))
                {
                    Assert.NotNull(message);
                    (h, payload) = (message.Header, message.Payload.ToArray());
                }
                Assert.True(h.IsCommand && h.Command == expected, $"{step}: message {i + 1} is {h.Command}, expected {expected}");
                var access = DmaAccessPayload.Decode(payload, step);
                Assert.True(access.Count is > 0 and <= Xfer, $"{step}: count {access.Count} exceeds 1024");
                Assert.True(access.Address >= low && access.Address + access.Count <= high, $"{step}: 0x{access.Address:x}+{access.Count} is outside the mapped pages 0x{low:x}..0x{high:x}");
                byte[] reply;
                if (expected == VfioUserCommand.DmaWrite)
                {
                    Assert.True(payload.Length == DmaAccessPayload.Length + (int)access.Count, $"{step}: DMA_WRITE carries {payload.Length - DmaAccessPayload.Length} bytes for count {access.Count}");
                    TestSupport.WriteMemFd(_memory, (long)access.Address, payload.AsSpan(DmaAccessPayload.Length, (int)access.Count));
                    pages.Add(access.Address / Page * Page);
                    reply = payload[..DmaAccessPayload.Length];
                }
                else
                {
                    reply = new byte[DmaAccessPayload.Length + (int)access.Count];
                    new DmaAccessPayload(access.Address, access.Count).Encode(reply);
                    TestSupport.ReadMemFd(_memory, (long)access.Address, (int)access.Count).CopyTo(reply, DmaAccessPayload.Length);
                }
                await Socket.SendAsync(VfioUserFrame.Build(h.MessageId, h.Command, VfioUserMessageFlags.Reply, reply), null, Ct);
            }
            return pages;
        }

        private async Task<(VfioUserHeader Header, byte[] Payload, int FdCount)> RequestAsync(VfioUserCommand command, byte[] payload, IReadOnlyList<SafeHandle>? fds)
        {
            await _mutex.WaitAsync(Ct);
            try
            {
                ushort id = _nextId++;
                await Socket.SendAsync(VfioUserFrame.Build(id, command, VfioUserMessageFlags.Command, payload), fds, Ct);
                using var reply = await Socket.ReceiveAsync(Ct).AsTask().WaitAsync(TimeSpan.FromSeconds(30), Ct);
                Assert.NotNull(reply);
                Assert.True(reply.Header.IsReply && reply.Header.MessageId == id && reply.Header.Command == command, $"{command}: the next message is {reply.Header.Command} id {reply.Header.MessageId}, not the reply");
                return (reply.Header, reply.Payload.ToArray(), reply.Fds.Count);
            }
            finally
            {
                _mutex.Release();
            }
        }

        public void Dispose()
        {
            Socket.Dispose();
            _mutex.Dispose();
        }
    }
}
