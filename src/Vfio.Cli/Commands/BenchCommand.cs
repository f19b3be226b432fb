using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Net.Sockets;
using Vfio.Migration;
using Vfio.Sample;
using Vfio.User.Client;
using Vfio.User.Protocol;
using Vfio.User.Server;
using Vfio.User.Transport;

namespace Vfio.Cli.Commands;

/// <summary>
/// <c>vfio-mig bench vfio-user</c>: STOP_COPY throughput of our client + server (MIG_DATA_READ over a real AF_UNIX
/// socket) against a raw socketpair copy of the same number of bytes, measured in the same run.
/// </summary>
internal static class BenchCommand
{
    /// <summary>The ratio the headline (sample device through client and server vs the raw copy) is held to.</summary>
    private const double Target = 0.95;

    private static VfioUserClientOptions BenchClientOptions { get; set; } = VfioUserClientOptions.Default;

    public static Command Create()
    {
        var size = CliOptions.DeviceSize("1GiB");
        var runs = CliOptions.Int("--runs", "Measured pairs of runs (vfio-user and raw copy, alternating which goes first); the ratio is their median", 5, 1, 100);
        var xfer = CliOptions.Size("--max-xfer", "Client max_data_xfer_size = MIG_DATA_READ size (4KiB..64MiB; our server accepts up to 64MiB)", "1MiB", 4096, 64L << 20);
        var json = CliOptions.Json();
        var vfioUser = new Command("vfio-user", "Stop-copy throughput of the vfio-user client+server vs a raw AF_UNIX socketpair copy") { size, runs, xfer, json };
        vfioUser.WithHelp(addresses: false,
            "vfio-mig bench vfio-user --size 1GiB",
            "vfio-mig bench vfio-user --size 256MiB --runs 3 --max-xfer 4MiB");
        vfioUser.SetAction(async (parse, cancellationToken) =>
        {
            {
                long bytes = parse.GetValue(size).Bytes;
                BenchClientOptions = new VfioUserClientOptions { MaxDataTransferBytes = (int)parse.GetValue(xfer).Bytes };
                int n = parse.GetValue(runs);
                bool asJson = parse.GetValue(json);
                var text = asJson ? Console.Error : Console.Out;
                var ci = CultureInfo.InvariantCulture;
                text.WriteLine(DescribeSocketBuffers());
                // The reference streams from memory as large as the device state (touched before any clock), as the
                // device reads its state, into one 1 MiB buffer, as the reader below; the same socket buffers as every
                // vfio-user socket gets, so the ratio compares protocols, not settings.
                using var raw = RawCopy.Start(tcp: false, 1, bytes, RawCopy.Chunk, VfioUserTuning.SocketBufferBytes);
                // Context only: re-sending one cache-hot 1 MiB buffer (a cache-resident copy).
                using var hot = RawCopy.Start(tcp: false, 1, RawCopy.Chunk, RawCopy.Chunk, VfioUserTuning.SocketBufferBytes);
                text.WriteLine(raw.Description);
                var report = new BenchReport("vfio-user", bytes, n, Target);
                report.UsedReference(raw);
                long warmUp = Math.Min(bytes, 64L << 20); // enough to get the hot paths optimised, never more than measured
                using (var warmSample = BenchDevice.Create(warmUp, memoryImage: false))
                using (var warmImage = BenchDevice.Create(warmUp, memoryImage: true))
                {
                    await CliProgress.For(asJson).StepAsync("warming up (3 untimed rounds)", async () =>
                    {
                        for (int w = 0; w < 3; w++)
                        {
                            await MeasureVfioUserAsync(warmSample, cancellationToken).ConfigureAwait(false);
                            await MeasureVfioUserAsync(warmImage, cancellationToken).ConfigureAwait(false);
                            raw.Run(warmUp);
                        }
                    }).ConfigureAwait(false);
                }
                double headline = 0;
                for (int pass = 0; pass < 2; pass++)
                {
                    bool memoryImage = pass == 1;
                    string what = memoryImage ? "memory-image device (transport only)" : "sample device";
                    text.WriteLine($"== {what}");
                    var series = report.Add(memoryImage ? "memory_image" : "sample", "raw_socketpair_1");
                    double best = 0, bestRaw = 0, bestHot = 0;
                    long streamBytes = 0;
                    // One device for all runs, like the raw reference's one source buffer: a fresh GiB per run would
                    // put its page faults and the release of the previous one next to the clock.
                    using var hosted = BenchDevice.Create(bytes, memoryImage);
                    for (int i = 0; i < n; i++)
                    {
                        // Pairs alternate which side runs first, so neither always inherits the other's aftermath.
                        (double Seconds, double CpuSeconds)? rawFirst = i % 2 == 1 && streamBytes > 0 ? raw.Run(streamBytes) : null;
                        var (moved, seconds, cpu) = await MeasureVfioUserAsync(hosted, cancellationToken).ConfigureAwait(false);
                        streamBytes = moved;
                        double ours = moved / seconds;
                        var (rawSeconds, rawCpu) = rawFirst ?? raw.Run(moved);
                        double rawRate = moved / rawSeconds;
                        series.Pair(moved, seconds, cpu, rawSeconds, rawCpu);
                        bestHot = Math.Max(bestHot, moved / hot.Run(moved).Seconds);
                        double gib = moved / (double)(1L << 30);
                        text.WriteLine(string.Create(ci, $"run {i + 1}: vfio-user {Units.FormatBytes(ours)}/s (cpu {cpu / gib:0.00} s/GiB), raw socketpair {Units.FormatBytes(rawRate)}/s (cpu {rawCpu / gib:0.00} s/GiB), ratio {ours / rawRate:0.00}"));
                        best = Math.Max(best, ours);
                        bestRaw = Math.Max(bestRaw, rawRate);
                    }
                    text.WriteLine(string.Create(ci, $"stop-copy stream: {Units.FormatBytes(streamBytes)} for a {Units.FormatBytes(bytes)} device"));
                    if (!memoryImage)
                    {
                        double alone = await MeasureDeviceAloneAsync(bytes, cancellationToken).ConfigureAwait(false);
                        series.Context["device_alone_bytes_per_second"] = alone;
                        text.WriteLine(string.Create(ci, $"sample device alone (in process, no socket): {Units.FormatBytes(alone)}/s"));
                    }
                    series.Context["hot_buffer_raw_bytes_per_second"] = bestHot;
                    text.WriteLine(string.Create(ci, $"vfio-user stop-copy: {Units.FormatBytes(best)}/s, raw AF_UNIX socketpair: {Units.FormatBytes(bestRaw)}/s, best vs best {best / bestRaw:0.00}"));
                    text.WriteLine(string.Create(ci, $"context, not the reference: raw socketpair re-sending one cache-hot 1 MiB buffer: {Units.FormatBytes(bestHot)}/s (best of {n}); vfio-user best vs it {best / bestHot:0.00}"));
                    text.WriteLine(string.Create(ci, $"ratio ({what}): {series.MedianRatio:0.00} (median of paired runs)"));
                    if (!memoryImage)
                        headline = series.MedianRatio;
                }
                report.Headline("sample", headline);
                text.WriteLine(string.Create(ci, $"ratio: {headline:0.00} (sample device through client+server vs raw socketpair, blocking; target >= {Target:0.00}: {(headline >= Target ? "met" : "NOT met")})"));
                if (asJson)
                    await report.WriteAsync(Console.Out).ConfigureAwait(false);
                return ExitCodes.Success;
            }
        });
        return new Command("bench", "Benchmarks: vfio-user (stop-copy over a socket), tcp (migration over loopback TCP) and migrate (between processes), each against a raw blocking copy of the same bytes in the same run.") { vfioUser };
    }

    // Serves the device on one end of a socketpair, drives RUNNING→STOP_COPY, reads the stream to its end (timed),
    // then returns the device to RUNNING for the next run.
    private static async Task<(long Bytes, double Seconds, double CpuSeconds)> MeasureVfioUserAsync(BenchDevice hosted, CancellationToken cancellationToken)
    {
        var (serverEnd, clientEnd) = UnixFdSocket.CreateSocketPair();
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var serving = Task.Run(() => VfioUserServer.ServeConnectedSocketAsync(serverEnd, hosted.Definition, null, cts.Token), CancellationToken.None);
        long total = 0;
        double seconds, cpu;
        await using (var device = new VfioUserMigrationDevice(await VfioUserClient.ConnectAsync(clientEnd, "bench", BenchClientOptions, cancellationToken).ConfigureAwait(false)))
        {
            var buffer = new byte[1 << 20];
            BenchSupport.Settle();
            var clock = BenchSupport.StartClock();
            await using (var stream = await device.SetStateAsync(VfioMigrationState.StopCopy, cancellationToken).ConfigureAwait(false)
                ?? throw new VfioException(Errno.EPROTO, "bench", "STOP_COPY opened no stream"))
            {
                int n;
                while ((n = await stream.ReadAsync(buffer, cancellationToken).ConfigureAwait(false)) > 0)
                    total += n;
                (seconds, cpu) = clock.Read();
            }
            await device.SetStateAsync(VfioMigrationState.Running, cancellationToken).ConfigureAwait(false);
        }
        await serving.ConfigureAwait(false);
        serverEnd.Dispose();
        return (total, seconds, cpu);
    }


    // The device's own stop-copy production rate, without any transport (context for the ratio).
    private static async Task<double> MeasureDeviceAloneAsync(long size, CancellationToken cancellationToken)
    {
        using var sample = new SampleDevice(new SampleDeviceOptions { SizeBytes = size, Capabilities = VfioMigrationFlags.StopCopy | VfioMigrationFlags.PreCopy });
        await using var device = new InProcessMigrationDevice(sample, "bench");
        var buffer = new byte[1 << 20];
        BenchSupport.Settle();
        var clock = Stopwatch.StartNew();
        await using var stream = await device.SetStateAsync(VfioMigrationState.StopCopy, cancellationToken).ConfigureAwait(false)
            ?? throw new VfioException(Errno.EPROTO, "bench", "STOP_COPY opened no stream");
        long total = 0;
        int n;
        while ((n = await stream.ReadAsync(buffer, cancellationToken).ConfigureAwait(false)) > 0)
            total += n;
        return total / clock.Elapsed.TotalSeconds;
    }

    // What every socket of both paths gets: the kernel caps the request at net.core.wmem_max/rmem_max.
    private static string DescribeSocketBuffers()
    {
        var (a, b) = UnixFdSocket.CreateSocketPair();
        using (a)
        using (b)
        {
            UnixFdSocket.EnlargeBuffers(a, VfioUserTuning.SocketBufferBytes);
            return string.Create(CultureInfo.InvariantCulture,
                $"socket buffers (both paths): SO_SNDBUF {Units.FormatBytes(a.SendBufferSize)}, SO_RCVBUF {Units.FormatBytes(a.ReceiveBufferSize)} as the kernel reports them (asked {Units.FormatBytes(VfioUserTuning.SocketBufferBytes)}; net.core.wmem_max/rmem_max cap it)");
        }
    }

    // A device the vfio-user runs serve, made once per pass.
    private sealed class BenchDevice(Vfio.Device.MigrationDevice device, VfioUserDeviceDefinition definition) : IDisposable
    {
        public VfioUserDeviceDefinition Definition => definition;

        public static BenchDevice Create(long size, bool memoryImage)
        {
            if (memoryImage)
            {
                var image = new MemoryImageDevice(size);
                return new BenchDevice(image, new VfioUserDeviceDefinition(image, "memory image")
                    .WithRegion(new VfioUserRegion(0, "BAR0", (ulong)image.Size, (o, d) => image.Read((long)o, d), (o, s) => image.Write((long)o, s))));
            }
            var sample = new SampleDevice(new SampleDeviceOptions { SizeBytes = size, Capabilities = VfioMigrationFlags.StopCopy | VfioMigrationFlags.PreCopy });
            return new BenchDevice(sample, VfioUserDeviceDefinition.ForSample(sample));
        }

        public void Dispose() => device.Dispose();
    }
}
