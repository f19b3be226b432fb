using System.Buffers.Binary;
using Vfio.Sample;
using Vfio.User.Client;
using Vfio.User.Server;

namespace Vfio.IntegrationTests;

/// <summary>
/// The <c>libvfio-user-sample</c> device profile: its stream against <see cref="LibVfioUserSample"/> (the stand-in for
/// libvfio-user's samples/server) in both directions (spec §7.5), its INTx + DMA behaviour in process (spec §12), and
/// the CLI's option checks.
/// </summary>
public sealed class LibVfioUserSampleDeviceTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromMinutes(2);

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static byte[] Pattern(int seed)
    {
        var b = new byte[LibVfioUserSampleDevice.Bar1Size];
        new Random(seed).NextBytes(b);
        return b;
    }

    private static long InAnHour() => DateTimeOffset.UtcNow.ToUnixTimeSeconds() + 3600;

    private static async Task<TestSupport.CliProcess> ServeAsync(string path)
    {
        var server = new TestSupport.CliProcess("serve", "--socket", path, "--device", "libvfio-user-sample");
        await server.WaitForOutputAsync("serving libvfio-user-sample device", TimeSpan.FromSeconds(30));
        return server;
    }

    [Fact]
    public async Task Our_stream_is_taken_by_the_libvfio_user_sample_as_destination_spec_7_5()
    {
        string path = TestSupport.TempSocketPath();
        using var ours = await ServeAsync(path);
        await using (var client = await VfioUserClient.ConnectAsync(path, null, Ct))
            await client.RegionWriteAsync(1, 0, Pattern(5), Ct);
        long t = InAnHour(); // the sample's destination cannot arm a timer in the past
        await using var sample = new LibVfioUserSample();
        using var migrate = new TestSupport.CliProcess("migrate", "--from", "unix:" + path, "--to", "unix:" + sample.Path, "--source-write", $"0:0:u64={t}");
        int rc = await migrate.WaitAsync(Timeout);
        Assert.True(rc == 0, $"migrate exited {rc}; stdout: {migrate.Output} stderr: {migrate.Error}");
        Assert.Contains("verified: destination matches source", migrate.Output, StringComparison.Ordinal);
        await sample.Finished.WaitAsync(Timeout, Ct);
        Assert.False(sample.Aborted, "a sample assert failed (it did not get exactly BAR1 + 8 bytes)");
        Assert.Equal(Pattern(5), sample.Bar1);
        Assert.Equal(t, sample.Bar0);
        Assert.Equal(2u, sample.State);
    }

    [Fact]
    public async Task The_libvfio_user_sample_stream_is_taken_by_ours_as_destination_spec_7_5()
    {
        long t = InAnHour();
        await using var sample = new LibVfioUserSample(bar1: Pattern(6));
        string path = TestSupport.TempSocketPath();
        using var ours = await ServeAsync(path);
        using var migrate = new TestSupport.CliProcess("migrate", "--from", "unix:" + sample.Path, "--to", "unix:" + path, "--source-write", $"0:0:u64={t}");
        int rc = await migrate.WaitAsync(Timeout);
        Assert.True(rc == 0, $"migrate exited {rc}; stdout: {migrate.Output} stderr: {migrate.Error}");
        Assert.Contains("verified: destination matches source", migrate.Output, StringComparison.Ordinal);
        await using var client = await VfioUserClient.ConnectAsync(path, null, Ct);
        var bar1 = new byte[LibVfioUserSampleDevice.Bar1Size];
        await client.RegionReadAsync(1, 0, bar1, Ct);
        Assert.Equal(Pattern(6), bar1);
        var bar0 = new byte[8];
        await client.RegionReadAsync(0, 0, bar0, Ct);
        long delta = BinaryPrimitives.ReadInt64LittleEndian(bar0); // now − t, as the sample reads it
        Assert.InRange(delta, -3601, -3590);
    }

    [Fact]
    public async Task Info_and_migrate_work_between_two_of_our_profile_servers_without_source_write()
    {
        string a = TestSupport.TempSocketPath(), b = TestSupport.TempSocketPath();
        using var src = await ServeAsync(a);
        using var dst = await ServeAsync(b);
        await using (var client = await VfioUserClient.ConnectAsync(a, null, Ct))
            await client.RegionWriteAsync(1, 0, Pattern(7), Ct);
        using (var info = new TestSupport.CliProcess("info", "unix:" + a))
        {
            Assert.Equal(0, await info.WaitAsync(Timeout));
            Assert.Contains("1 BAR1   size        16384 (16.0 KiB) flags 0x3 READ WRITE", info.Output, StringComparison.Ordinal);
            Assert.Contains("migration: caps 0x5, state RUNNING, stop-copy size n/a", info.Output, StringComparison.Ordinal);
        }
        // BAR0 = 0 (never written) migrates too: our destination does not refuse RUNNING for a past time.
        using var migrate = new TestSupport.CliProcess("migrate", "--from", "unix:" + a, "--to", "unix:" + b);
        int rc = await migrate.WaitAsync(Timeout);
        Assert.True(rc == 0, $"migrate exited {rc}; stdout: {migrate.Output} stderr: {migrate.Error}");
        Assert.Contains("16.0 KiB stop-copy", migrate.Output, StringComparison.Ordinal);
        Assert.Contains("verified: destination matches source", migrate.Output, StringComparison.Ordinal);
        await using var check = await VfioUserClient.ConnectAsync(b, null, Ct);
        var bar1 = new byte[LibVfioUserSampleDevice.Bar1Size];
        await check.RegionReadAsync(1, 0, bar1, Ct);
        Assert.Equal(Pattern(7), bar1);
    }

    [Fact]
    public async Task An_interrupt_due_before_INTx_is_configured_waits_for_the_eventfd_then_does_message_DMA_spec_12()
    {
        using var device = new LibVfioUserSampleDevice();
        string path = TestSupport.TempSocketPath();
        await using var server = new VfioUserServer(path, VfioUserDeviceDefinition.ForLibVfioUserSample(device));
        server.Start();
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        var run = server.RunAsync(cts.Token);
        await using (var client = await VfioUserClient.ConnectAsync(path, new VfioUserClientOptions { MaxDataTransferBytes = 1024 }, Ct))
        {
            var page0 = new byte[4096];
            var page1 = new byte[4096];
            await client.DmaMapAsync(0x8000, page0, cancellationToken: Ct); // message mode: no direct write possible
            await client.DmaMapAsync(0x9000, page1, cancellationToken: Ct);
            var past = new byte[8];
            BinaryPrimitives.WriteInt64LittleEndian(past, DateTimeOffset.UtcNow.ToUnixTimeSeconds() - 5);
            await client.RegionWriteAsync(0, 0, past, Ct);
            await Task.Delay(300, Ct);
            Assert.Equal(0, device.InterruptCount); // due, but no INTx eventfd yet

            using var irq = TestSupport.EventFd();
            await client.SetIrqEventFdsAsync(0, 0, [irq], 1, Ct);
            Assert.Equal(1UL, await Task.Run(() => TestSupport.ReadEventFd(irq), Ct).WaitAsync(TimeSpan.FromSeconds(30), Ct));
            for (int i = 0; i < 500 && device.DmaRoundCount == 0 && device.LastDmaError is null; i++)
                await Task.Delay(10, Ct);
            Assert.Null(device.LastDmaError);
            Assert.Equal(1, device.DmaRoundCount);
            Assert.All(page0, b => Assert.NotEqual(0, b)); // the 4 DMA_WRITEs of 1024 bytes
            Assert.All(page1, b => Assert.Equal(0, b));
        }
        await cts.CancelAsync();
        await run.WaitAsync(Timeout, Ct);
    }

    [Theory]
    [InlineData("--size", "1MiB")]
    [InlineData("--dirty-rate", "1MiB/s")]
    [InlineData("--caps", "0x1")]
    [InlineData("--seed", "3")]
    [InlineData("--fault", "no-eof")]
    public async Task Serve_refuses_sample_device_options_for_the_libvfio_user_profile(string option, string value)
    {
        using var serve = new TestSupport.CliProcess("serve", "--socket", TestSupport.TempSocketPath(), "--device", "libvfio-user-sample", option, value);
        Assert.Equal(2, await serve.WaitAsync(Timeout)); // a usage error (docs/cli/conventions.md)
        Assert.StartsWith($"vfio-mig serve: error: EINVAL: {option} does not apply to --device libvfio-user-sample", serve.Error, StringComparison.Ordinal);
    }
}
