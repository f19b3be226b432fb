using System.Security.Cryptography;
using Vfio.Engine;
using Vfio.Migration;
using Vfio.Sample;
using Vfio.Uapi;
using Vfio.User.Client;
using Vfio.User.Protocol;
using Vfio.User.Server;
using Vfio.User.Transport;

namespace Vfio.IntegrationTests;

public sealed class ClientServerTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Negotiates_and_reads_device_info_over_a_real_socket()
    {
        await using var fx = new TestSupport.ServerFixture();
        await using var client = await VfioUserClient.ConnectAsync(fx.Path, null, Ct);
        Assert.Equal(2, client.ServerMinor);
        Assert.Equal(1 << 20, client.ServerMaxDataTransferBytes);
        var info = await client.GetDeviceInfoAsync(Ct);
        Assert.Equal(9u, info.NumRegions);
        Assert.Equal(5u, info.NumIrqs);
        Assert.Equal(3u, info.Flags);
        var bar0 = await client.GetRegionInfoAsync(0, Ct);
        Assert.Equal((ulong)fx.Device.SizeBytes, bar0.Size);
        var config = new byte[64];
        await client.RegionReadAsync(VfioUserDeviceDefinition.ConfigRegionIndex, 0, config, Ct);
        Assert.Equal(new byte[] { 0xad, 0xde, 0xef, 0xbe }, config[..4]);
        var irq = await client.GetIrqInfoAsync(0, Ct);
        Assert.Equal(1u, irq.Count);
    }

    [Fact]
    public async Task Region_write_then_read_round_trips_through_bar0()
    {
        await using var fx = new TestSupport.ServerFixture();
        await using var client = await VfioUserClient.ConnectAsync(fx.Path, null, Ct);
        var data = new byte[200_000];
        new Random(5).NextBytes(data);
        await client.RegionWriteAsync(0, 4096, data, Ct);
        var back = new byte[data.Length];
        await client.RegionReadAsync(0, 4096, back, Ct);
        Assert.Equal(data, back);
        var direct = new byte[data.Length];
        fx.Device.ReadState(4096, direct);
        Assert.Equal(data, direct);
    }

    [Fact]
    public async Task Irq_eventfd_passes_as_scm_rights_and_is_signalled()
    {
        await using var fx = new TestSupport.ServerFixture();
        await using var client = await VfioUserClient.ConnectAsync(fx.Path, null, Ct);
        using var efd = TestSupport.EventFd();
        await client.SetIrqEventFdsAsync(0, 0, [efd], 1, Ct);
        var connection = await fx.WaitForConnectionAsync();
        Assert.True(connection.TriggerIrq(0, 0));
        Assert.Equal(1UL, TestSupport.ReadEventFd(efd));
        // TRIGGER|DATA_NONE: the server signals the eventfd itself.
        await client.SetIrqsAsync(SetIrqsPayload.ActionTrigger | SetIrqsPayload.DataNone, 0, 0, 1, Ct);
        Assert.Equal(1UL, TestSupport.ReadEventFd(efd));
        // Disable all: the server closes its copy; triggering then reports false.
        await client.SetIrqsAsync(SetIrqsPayload.ActionTrigger | SetIrqsPayload.DataNone, 0, 0, 0, Ct);
        Assert.False(connection.TriggerIrq(0, 0));
    }

    [Fact]
    public async Task Memfd_dma_region_is_mmapped_by_the_server_and_message_mode_uses_dma_messages()
    {
        await using var fx = new TestSupport.ServerFixture();
        await using var client = await VfioUserClient.ConnectAsync(fx.Path, null, Ct);
        using var memfd = TestSupport.MemFd(3 * 4096);
        await client.DmaMapAsync(0x10000, 2 * 4096, memfd, 4096, cancellationToken: Ct);
        var connection = await fx.WaitForConnectionAsync();

        var payload = "written by the device"u8.ToArray();
        await connection.DmaWriteAsync(0x10010, payload, Ct);
        Assert.Equal(payload, TestSupport.ReadMemFd(memfd, 4096 + 0x10, payload.Length));
        TestSupport.WriteMemFd(memfd, 4096 + 0x100, "from the guest"u8);
        var read = new byte[14];
        await connection.DmaReadAsync(0x10100, read, Ct);
        Assert.Equal("from the guest"u8.ToArray(), read);

        // Message mode: no fd; the server's DMA becomes DMA_READ/DMA_WRITE messages the client serves.
        var guest = new byte[3 * (1 << 20)];
        await client.DmaMapAsync(0x1000_0000, guest, cancellationToken: Ct);
        var big = new byte[(1 << 20) + 12345];
        new Random(3).NextBytes(big);
        await connection.DmaWriteAsync(0x1000_0000 + 100, big, Ct);
        Assert.Equal(big, guest.AsSpan(100, big.Length).ToArray());
        var back = new byte[big.Length];
        await connection.DmaReadAsync(0x1000_0000 + 100, back, Ct);
        Assert.Equal(big, back);

        // Outside any mapping: EFAULT; after UNMAP the range is gone.
        var ex = await Assert.ThrowsAsync<VfioException>(async () => await connection.DmaReadAsync(0x9999_0000, new byte[8], Ct));
        Assert.Equal(Errno.EFAULT, ex.Errno);
        var held = connection.Dma.Find(0x10000, 8)!; // a device that looked the mapping up just before the unmap
        await client.DmaUnmapAsync(0x10000, 2 * 4096, cancellationToken: Ct);
        Assert.Equal(Errno.EFAULT, Assert.Throws<VfioException>(() => held.CopyIn(0x10000, "late"u8)).Errno); // not a write into unmapped memory
        Assert.Equal(1, connection.Dma.Count);
        var gone = await Assert.ThrowsAsync<VfioException>(() => client.DmaUnmapAsync(0x10000, 2 * 4096, cancellationToken: Ct));
        Assert.Equal(Errno.ENOENT, gone.Errno);
        await client.DmaUnmapAsync(0, 0, all: true, cancellationToken: Ct);
        Assert.Equal(0, connection.Dma.Count);
    }

    [Fact]
    public async Task Overlapping_dma_map_is_einval_and_exact_duplicate_is_ok()
    {
        await using var fx = new TestSupport.ServerFixture();
        await using var client = await VfioUserClient.ConnectAsync(fx.Path, null, Ct);
        using var memfd = TestSupport.MemFd(4 * 4096);
        await client.DmaMapAsync(0x20000, 4096, memfd, 0, cancellationToken: Ct);
        await client.DmaMapAsync(0x20000, 4096, memfd, 0, cancellationToken: Ct);
        var ex = await Assert.ThrowsAsync<VfioException>(() => client.DmaMapAsync(0x20800, 4096, memfd, 0, cancellationToken: Ct));
        Assert.Equal(Errno.EINVAL, ex.Errno);
    }

    [Fact]
    public async Task Dirty_logging_over_the_wire_reports_and_clears_written_pages()
    {
        await using var fx = new TestSupport.ServerFixture();
        await using var device = await VfioUserMigrationDevice.ConnectAsync(fx.Path, null, Ct);
        ulong size = (ulong)fx.Device.SizeBytes;
        ulong page = await device.StartDmaLoggingAsync(4096, [new VfioDmaLoggingRange(0, size)], Ct);
        Assert.Equal(4096UL, page);
        await device.Client.RegionWriteAsync(0, 3 * 4096 + 17, new byte[] { 1, 2, 3 }, Ct);
        await device.Client.RegionWriteAsync(0, 70 * 4096, new byte[4096], Ct);
        var bitmap = new ulong[VfioDmaLoggingReport.BitmapWords(size, 4096)];
        await device.ReportDmaLoggingAsync(0, size, 4096, bitmap, Ct);
        Assert.Equal(1UL << 3, bitmap[0]);
        Assert.Equal(1UL << 6, bitmap[1]);
        Array.Clear(bitmap);
        await device.ReportDmaLoggingAsync(0, size, 4096, bitmap, Ct);
        Assert.All(bitmap, w => Assert.Equal(0UL, w));
        await device.StopDmaLoggingAsync(Ct);
    }

    [Fact]
    public async Task Migration_over_vfio_user_with_the_engine_reproduces_the_state()
    {
        var opts = new SampleDeviceOptions { SizeBytes = 8 << 20, Capabilities = VfioMigrationFlags.StopCopy | VfioMigrationFlags.PreCopy, DirtyRateBytesPerSecond = 4 << 20, Seed = 11 };
        await using var src = new TestSupport.ServerFixture(opts);
        await using var dst = new TestSupport.ServerFixture(opts with { DirtyRateBytesPerSecond = 0, Seed = 12 });
        await using var a = await VfioUserMigrationDevice.ConnectAsync(src.Path, null, Ct);
        await using var b = await VfioUserMigrationDevice.ConnectAsync(dst.Path, null, Ct);
        var stats = await MigrationEngine.MigrateAsync([a], [b], MigrationOptions.Default with { NonConvergence = NonConvergencePolicy.ForceSwitchover }, null, Ct);
        Assert.True(stats.TotalBytes >= opts.SizeBytes);
        Assert.Equal(VfioMigrationState.Stop, src.Device.State);
        Assert.Equal(VfioMigrationState.Running, dst.Device.State);
        Assert.Equal(src.Device.ComputeSha256(), dst.Device.ComputeSha256());
        // docs/performance.md, "Relaying without copies": between two vfio-user connections in one process the data
        // went socket → kernel pipe → socket; every byte that came in through a pipe left through one.
        var (received, _) = a.Client.SplicedBytes;
        var (_, sent) = b.Client.SplicedBytes;
        Assert.True(received >= opts.SizeBytes, $"{received} bytes spliced in, at least the device's {opts.SizeBytes} expected");
        Assert.Equal(received, sent);
        await a.DisposeAsync();
        Assert.Equal(0, a.Client.OpenPipes);
    }

    // A chunk held in a kernel pipe that meets a destination which cannot take it (an in-process device) is copied
    // out once and written as plain bytes; a vfio-user source towards any destination keeps the state exact.
    [Fact]
    public async Task Migration_from_vfio_user_to_an_in_process_device_copies_the_held_chunks_out()
    {
        var opts = new SampleDeviceOptions { SizeBytes = 8 << 20, Capabilities = VfioMigrationFlags.StopCopy | VfioMigrationFlags.PreCopy, DirtyRateBytesPerSecond = 4 << 20, Seed = 13 };
        await using var src = new TestSupport.ServerFixture(opts);
        await using var a = await VfioUserMigrationDevice.ConnectAsync(src.Path, null, Ct);
        using var local = new SampleDevice(opts with { DirtyRateBytesPerSecond = 0, Seed = 14 });
        await using var b = new InProcessMigrationDevice(local, "local");
        await MigrationEngine.MigrateAsync([a], [b], MigrationOptions.Default with { NonConvergence = NonConvergencePolicy.ForceSwitchover }, null, Ct);
        Assert.Equal(VfioMigrationState.Running, local.State);
        Assert.Equal(src.Device.ComputeSha256(), local.ComputeSha256());
        Assert.True(a.Client.SplicedBytes.Received >= opts.SizeBytes);
    }

    // Faults in the middle of a relay: the source's or the destination's connection is cut while chunks are in
    // kernel pipes. The migration fails, exactly one copy runs (the source: pre-copy never stopped it, and the engine
    // takes it back to RUNNING), the destination never starts, and no kernel pipe outlives the connections.
    [Theory(Timeout = 120000)]
    [InlineData("source")]
    [InlineData("destination")]
    public async Task A_connection_cut_in_the_middle_of_a_relay_fails_the_migration_with_one_live_copy_and_no_pipe_left(string cut)
    {
        TestContext.Current.CancellationToken.ThrowIfCancellationRequested();
        var opts = new SampleDeviceOptions { SizeBytes = 64 << 20, Capabilities = VfioMigrationFlags.StopCopy | VfioMigrationFlags.PreCopy, Seed = 15 };
        await using var src = new TestSupport.ServerFixture(opts);
        await using var dst = new TestSupport.ServerFixture(opts with { Seed = 16 });
        var a = await VfioUserMigrationDevice.ConnectAsync(src.Path, null, Ct);
        var b = await VfioUserMigrationDevice.ConnectAsync(dst.Path, null, Ct);
        await using (a)
        await using (b)
        {
            var migrating = MigrationEngine.MigrateAsync([a], [b], MigrationOptions.Default with { BufferBytes = 64 << 10 }, null, Ct);
            while (b.Client.SplicedBytes.Sent < (4 << 20) && !migrating.IsCompleted)
                await Task.Delay(1, Ct);
            Assert.False(migrating.IsCompleted, "the migration ended before the cut");
            (cut == "source" ? a : b).Client.Sever();
            await Assert.ThrowsAnyAsync<VfioException>(() => migrating.WaitAsync(TimeSpan.FromSeconds(60), Ct));
        }
        // The destination holds no copy of the state (left RESUMING with part of it, or reset by the engine's abort).
        Assert.NotEqual(src.Device.ComputeSha256(), dst.Device.ComputeSha256());
        if (cut == "destination")
            Assert.Equal(VfioMigrationState.Running, src.Device.State);
        else
            Assert.True(src.Device.State is VfioMigrationState.Running or VfioMigrationState.PreCopy, $"source in {src.Device.State}");
        Assert.Equal(0, a.Client.OpenPipes);
        Assert.Equal(0, b.Client.OpenPipes);
    }

    [Fact]
    public async Task Stop_copy_stream_reads_to_the_end_with_pipelining_and_resumes_elsewhere()
    {
        var opts = new SampleDeviceOptions { SizeBytes = 4 << 20, Capabilities = VfioMigrationFlags.StopCopy | VfioMigrationFlags.PreCopy, Seed = 3 };
        await using var src = new TestSupport.ServerFixture(opts);
        await using var dst = new TestSupport.ServerFixture(opts with { Seed = 4 });
        await using var a = await VfioUserMigrationDevice.ConnectAsync(src.Path, null, Ct);
        await using var b = await VfioUserMigrationDevice.ConnectAsync(dst.Path, null, Ct);
        Assert.Null(await a.SetStateAsync(VfioMigrationState.Stop, Ct));
        await using var save = await a.SetStateAsync(VfioMigrationState.StopCopy, Ct);
        Assert.NotNull(save);
        await using var load = await b.SetStateAsync(VfioMigrationState.Resuming, Ct);
        Assert.NotNull(load);
        var buffer = new byte[300_000];
        long total = 0;
        while (true)
        {
            int n = await save.ReadAsync(buffer, Ct);
            if (n == 0)
                break;
            total += n;
            await load.WriteAsync(buffer.AsMemory(0, n), Ct);
        }
        Assert.True(total > opts.SizeBytes);
        Assert.Null(await b.SetStateAsync(VfioMigrationState.Stop, Ct));
        Assert.Equal(src.Device.ComputeSha256(), dst.Device.ComputeSha256());
    }

    // Pre-copy reads are pipelined while the device fills whole reads; a state change in the middle of a round collects
    // the reads still in flight first, so their data comes next in the stream and none is answered as a STOP_COPY read.
    [Fact]
    public async Task Pre_copy_reads_in_flight_at_a_state_change_keep_their_data_in_stream_order()
    {
        // 2 MiB: of the four 1 MiB reads in flight after the first, the third comes back short and the fourth empty; read
        // in STOP_COPY, the short one would end the stream early.
        var opts = new SampleDeviceOptions { SizeBytes = 2 << 20, Capabilities = VfioMigrationFlags.StopCopy | VfioMigrationFlags.PreCopy, Seed = 21 };
        await using var src = new TestSupport.ServerFixture(opts);
        await using var dst = new TestSupport.ServerFixture(opts with { Seed = 22 });
        await using var a = await VfioUserMigrationDevice.ConnectAsync(src.Path, null, Ct);
        await using var b = await VfioUserMigrationDevice.ConnectAsync(dst.Path, null, Ct);
        await using var save = await a.SetStateAsync(VfioMigrationState.PreCopy, Ct);
        Assert.NotNull(save);
        await using var load = await b.SetStateAsync(VfioMigrationState.Resuming, Ct);
        Assert.NotNull(load);
        var buffer = new byte[100_000]; // smaller than a read request: the rest of each reply waits in the stream
        long total = 0;
        for (int i = 0; i < 3; i++)
        {
            int n = await save.ReadAsync(buffer, Ct);
            Assert.True(n > 0);
            total += n;
            await load.WriteAsync(buffer.AsMemory(0, n), Ct);
        }
        Assert.Same(save, await a.SetStateAsync(VfioMigrationState.StopCopy, Ct) ?? save); // the saving stream continues
        int read;
        while ((read = await save.ReadAsync(buffer, Ct)) > 0)
        {
            total += read;
            await load.WriteAsync(buffer.AsMemory(0, read), Ct);
        }
        Assert.True(total > opts.SizeBytes);
        Assert.Null(await b.SetStateAsync(VfioMigrationState.Stop, Ct)); // the destination validates every record
        Assert.Equal(src.Device.ComputeSha256(), dst.Device.ComputeSha256());
    }

    [Fact]
    public async Task Pre_copy_emulated_info_and_short_reads_mean_no_more_for_now()
    {
        var opts = new SampleDeviceOptions { SizeBytes = 1 << 20, Capabilities = VfioMigrationFlags.StopCopy | VfioMigrationFlags.PreCopy };
        await using var src = new TestSupport.ServerFixture(opts);
        await using var a = await VfioUserMigrationDevice.ConnectAsync(src.Path, null, Ct);
        await using var save = await a.SetStateAsync(VfioMigrationState.PreCopy, Ct);
        Assert.NotNull(save);
        var info = await save.GetPrecopyInfoAsync(Ct);
        Assert.True(info.DirtyBytes > 0);
        var buffer = new byte[64 << 10];
        long total = 0;
        int n;
        while ((n = await save.ReadAsync(buffer, Ct)) > 0)
            total += n;
        Assert.True(total >= opts.SizeBytes);
        Assert.Equal(0, await save.ReadAsync(buffer, Ct)); // still nothing: temporary end
        Assert.Null(await a.SetStateAsync(VfioMigrationState.Running, Ct));
    }

    [Fact]
    public async Task Socketpair_transport_serves_an_in_process_device()
    {
        using var sample = new SampleDevice(new SampleDeviceOptions { SizeBytes = 64 << 10 });
        var (s, c) = UnixFdSocket.CreateSocketPair();
        var serving = VfioUserServer.ServeConnectedSocketAsync(s, VfioUserDeviceDefinition.ForSample(sample), null, Ct);
        await using (var client = await VfioUserClient.ConnectAsync(c, "pair", null, Ct))
        {
            var data = new byte[64 << 10];
            await client.RegionReadAsync(0, 0, data, Ct);
            Assert.Equal(SHA256.HashData(data), sample.ComputeSha256());
        }
        await serving.WaitAsync(TimeSpan.FromSeconds(10), Ct);
        s.Dispose();
    }
}
