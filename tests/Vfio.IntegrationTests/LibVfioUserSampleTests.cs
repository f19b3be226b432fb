using System.Buffers.Binary;
using Vfio.User.Client;
using Vfio.User.Protocol;

namespace Vfio.IntegrationTests;

/// <summary>
/// <c>vfio-mig migrate</c> and <c>vfio-mig info</c> as child processes against <see cref="LibVfioUserSample"/>, the
/// stand-in for libvfio-user's samples/server (spec §11: a C# client migrating a libvfio-user sample server).
/// </summary>
public sealed class LibVfioUserSampleTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromMinutes(2);

    private static byte[] Pattern(int seed)
    {
        var b = new byte[LibVfioUserSample.Bar1Size];
        new Random(seed).NextBytes(b);
        return b;
    }

    private static long InAnHour() => DateTimeOffset.UtcNow.ToUnixTimeSeconds() + 3600;

    [Fact]
    public async Task Migrate_moves_a_sample_server_without_precopy_and_verifies_spec_7_5_and_11()
    {
        // Spec §11 step 4: BAR0 gets a future time in the migration's own connection (--source-write).
        long t = InAnHour();
        await using var a = new LibVfioUserSample(bar1: Pattern(1));
        await using var b = new LibVfioUserSample();
        using var migrate = new TestSupport.CliProcess("migrate", "--from", "unix:" + a.Path, "--to", "unix:" + b.Path, "--source-write", $"0:0:u64={t}");
        int rc = await migrate.WaitAsync(Timeout);
        Assert.True(rc == 0, $"migrate exited {rc}; stdout: {migrate.Output} stderr: {migrate.Error}");
        Assert.Contains("note: pre-copy skipped: unix:" + a.Path + " answers MIG_DATA_SIZE with EINVAL", migrate.Output, StringComparison.Ordinal);
        Assert.Contains("verified: destination matches source", migrate.Output, StringComparison.Ordinal);
        await Task.WhenAll(a.Finished, b.Finished).WaitAsync(Timeout, TestContext.Current.CancellationToken);
        Assert.False(a.Aborted || b.Aborted, "a sample assert failed");
        Assert.Equal(Pattern(1), b.Bar1);
        Assert.Equal(t, b.Bar0);
        Assert.Equal(1u, a.State); // STOP: the source is left stopped after a migration
        Assert.Equal(2u, b.State); // RUNNING
        Assert.DoesNotContain(VfioUserCommand.DmaMap, a.Commands); // migrate needs no DMA maps on a sample
        Assert.DoesNotContain(VfioUserCommand.DmaMap, b.Commands);
    }

    [Fact]
    public async Task Migrate_of_an_unwritten_sample_is_held_when_the_destination_refuses_RUNNING_spec_7_5()
    {
        // BAR0 = 0 is in the past: the destination's timer cannot be armed, SET RUNNING answers EINVAL. That
        // happens after the commit, so the migration ends held (exit 4): the destination keeps the loaded
        // state in STOP, the source stays stopped (docs/commit-protocol.md).
        await using var a = new LibVfioUserSample(bar1: Pattern(3));
        await using var b = new LibVfioUserSample();
        string stateDir = Path.Combine(Path.GetTempPath(), "vfio-mig-state-" + Guid.NewGuid().ToString("N")[..12]);
        try
        {
            using var migrate = new TestSupport.CliProcess("migrate", "--from", "unix:" + a.Path, "--to", "unix:" + b.Path, "--state-dir", stateDir);
            int rc = await migrate.WaitAsync(Timeout);
            Assert.True(rc == 4, $"migrate exited {rc}; stdout: {migrate.Output} stderr: {migrate.Error}");
            Assert.Contains("RUNNING", migrate.Error, StringComparison.Ordinal);
            Assert.Contains("EINVAL", migrate.Error, StringComparison.Ordinal);
            Assert.Contains("is HELD", migrate.Error, StringComparison.Ordinal);
            Assert.Contains("vfio-mig resolve ", migrate.Error, StringComparison.Ordinal);
        }
        finally
        {
            if (Directory.Exists(stateDir))
                Directory.Delete(stateDir, recursive: true);
        }
        Assert.Equal(Pattern(3), b.Bar1); // the data did move
        Assert.False(a.Aborted || b.Aborted, "a sample assert failed");
    }

    [Fact]
    public async Task Migrate_with_precopy_on_overfeeds_the_sample_destination_spec_7_5()
    {
        // The sample's destination takes exactly BAR1 ‖ BAR0; pre-copy bytes on top make it refuse (EINVAL)
        // the stop-copy write as partial. That is why --precopy auto skips pre-copy for it.
        await using var a = new LibVfioUserSample(bar1: Pattern(2));
        await using var b = new LibVfioUserSample();
        using var migrate = new TestSupport.CliProcess("migrate", "--from", "unix:" + a.Path, "--to", "unix:" + b.Path, "--precopy", "on", "--no-verify", "--source-write", $"0:0:u64={InAnHour()}");
        int rc = await migrate.WaitAsync(Timeout);
        Assert.True(rc == 1, $"migrate exited {rc}; stdout: {migrate.Output} stderr: {migrate.Error}");
        Assert.Contains("EINVAL", migrate.Error, StringComparison.Ordinal);
        Assert.Contains(VfioUserCommand.MigDataWrite, b.Commands);
    }

    [Fact]
    public async Task Info_reads_the_sample_server_without_a_migration_error_spec_1_1()
    {
        await using var a = new LibVfioUserSample();
        using var info = new TestSupport.CliProcess("info", "unix:" + a.Path);
        int rc = await info.WaitAsync(Timeout);
        Assert.True(rc == 0, $"info exited {rc}; stdout: {info.Output} stderr: {info.Error}");
        string text = info.Output;
        Assert.Contains("protocol: vfio-user 0.2, max_data_xfer_size 1048576, max_msg_fds 8", text, StringComparison.Ordinal);
        Assert.Contains("flags: 0x3 RESET PCI", text, StringComparison.Ordinal);
        Assert.Contains("1 BAR1   size        16384 (16.0 KiB) flags 0x7 READ WRITE MMAP", text, StringComparison.Ordinal);
        Assert.Contains("0 INTx   count 1 flags 0x1 EVENTFD", text, StringComparison.Ordinal);
        Assert.Contains("migration: caps 0x5, state RUNNING, stop-copy size n/a", text, StringComparison.Ordinal);
        Assert.DoesNotContain("EINVAL", text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Client_takes_a_sparse_mmap_region_info_with_its_fd_and_closes_it_spec_6_4()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var a = new LibVfioUserSample();
        await using var client = await VfioUserClient.ConnectAsync(a.Path, null, ct);
        var short32 = await client.GetRegionInfoAsync(1, ct);
        Assert.Equal(80u, short32.Argsz); // the full size, although only 32 bytes came
        Assert.Equal((ulong)LibVfioUserSample.Bar1Size, short32.Size);

        using (var full = await client.RequestAsync(VfioUserCommand.DeviceGetRegionInfo, new RegionInfoPayload(80, 0, 1, 0, 0, 0).Encode(), null, ct))
        {
            Assert.Equal(80, full.PayloadLength);
            Assert.Equal(1, full.Fds.Count);
            Assert.Equal(RegionInfoPayload.FlagCaps | 7u, BinaryPrimitives.ReadUInt32LittleEndian(full.Payload[4..]));
            Assert.Equal(2u, BinaryPrimitives.ReadUInt32LittleEndian(full.Payload[40..])); // SPARSE_MMAP nr_areas
        }
        // The fd was closed with the message; the connection is still in sync.
        Assert.Equal(9u, (await client.GetDeviceInfoAsync(ct)).NumRegions);
    }
}
