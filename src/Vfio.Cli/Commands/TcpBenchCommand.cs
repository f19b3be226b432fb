using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Vfio.Device;
using Vfio.Engine;
using Vfio.Migration;
using Vfio.Net;
using Vfio.Sample;

namespace Vfio.Cli.Commands;

/// <summary>
/// <c>vfio-mig bench tcp</c>: migrations over loopback TCP (a sample device and a memory-image device, 1 and N
/// channels) against a raw TCP copy of the same bytes between buffers as large as the device state and the stream.
/// </summary>
internal static class TcpBenchCommand
{
    private const string Path = "127.0.0.1";

    private static NetSecurityOptions s_send = NetSecurityOptions.InsecureDefault;
    private static NetSecurityOptions s_receive = NetSecurityOptions.InsecureDefault;
    private static int s_runs = 1;

    private enum DeviceKind
    {
        Sample,
        MemoryImage,
    }

    /// <summary>One timed run: its duration and the migration-stream bytes it moved.</summary>
    private readonly record struct Run(TimeSpan Time, long Bytes);

    public static Command Create()
    {
        var size = new Option<string>("--size") { Description = "Device state size (both devices)", DefaultValueFactory = _ => "1GiB" };
        var channels = new Option<int>("--channels") { Description = "Channels of the multi-channel runs (compared with 1)", DefaultValueFactory = _ => 4 };
        var runs = new Option<int>("--runs") { Description = "Timed runs of every row; the fastest is reported (the machine may be shared)", DefaultValueFactory = _ => 1 };
        var tls = new Option<bool>("--tls") { Description = "Run the migrations and the transport-only rows over TLS (a throw-away certificate made in process), and add a raw TLS copy" };
        var command = new Command("tcp", "Migrate a sample device and a memory-image device over loopback TCP with 1 and N channels and compare with a raw TCP copy of the same bytes in the same run.")
        {
            size, channels, runs, tls,
        };
        command.SetAction(async (parse, cancellationToken) =>
        {
            try
            {
                long bytes = Units.ParseBytes(parse.GetValue(size)!, "size");
                int n = parse.GetValue(channels);
                if (n is < 1 or > NetProtocol.MaxChannels)
                    throw new VfioException(Errno.EINVAL, "bench tcp", $"--channels must be 1..{NetProtocol.MaxChannels}");
                if (bytes < (1 << 20) || bytes > (16L << 30))
                    throw new VfioException(Errno.EINVAL, "bench tcp", "--size must be 1MiB..16GiB");
                bool useTls = parse.GetValue(tls);
                s_runs = parse.GetValue(runs);
                if (s_runs is < 1 or > 20)
                    throw new VfioException(Errno.EINVAL, "bench tcp", "--runs must be 1..20");
                (s_send, s_receive) = useTls ? MakeTls() : (NetSecurityOptions.InsecureDefault, NetSecurityOptions.InsecureDefault);
                await RunAsync(bytes, n, useTls, cancellationToken).ConfigureAwait(false);
                return 0;
            }
            catch (Exception e) when (e is VfioException or MigrationException or IOException)
            {
                return NetCli.Fail(e, "bench tcp");
            }
        });
        return command;
    }

    private static async Task RunAsync(long bytes, int n, bool useTls, CancellationToken cancellationToken)
    {
        bool image = bytes <= MemoryImageDevice.MaxSize;
        string security = useTls ? "migrations over TLS; the headline raw copy is plain TCP, a raw TLS copy is context" : "no TLS";
        string runs = s_runs == 1 ? "1 timed run per row" : F($"fastest of {s_runs} timed runs per row");
        Line($"bench tcp: {Units.FormatBytes(bytes)} device state, path {Path} loopback, sender and receiver in this process, {Environment.ProcessorCount} CPUs, {security}, {runs}");

        // Warm-up, not reported: three rounds, so the hot methods reach their optimised tier (tiering needs 30
        // calls, then compiles in the background) before any clock starts, and that compiling does not share
        // the cores with a timed run.
        var warm = new BenchBuffer(32 << 20, random: true);
        for (int round = 0; round < 3; round++)
        {
            await MigrateAsync(DeviceKind.Sample, 32 << 20, 1 + (round % 2), cancellationToken, report: false).ConfigureAwait(false);
            if (image)
                await MigrateAsync(DeviceKind.MemoryImage, 32 << 20, 1 + (round % 2), cancellationToken, report: false).ConfigureAwait(false);
            await RawCopyAsync(32 << 20, warm, warm, useTls, cancellationToken).ConfigureAwait(false);
            await TransportOnlyAsync(32 << 20, 1 + (round % 2), warm, warm, cancellationToken).ConfigureAwait(false);
        }
        await Task.Delay(200, cancellationToken).ConfigureAwait(false);

        var sample1 = await FastestAsync(() => MigrateAsync(DeviceKind.Sample, bytes, 1, cancellationToken)).ConfigureAwait(false);
        var sampleN = n == 1 ? sample1 : await FastestAsync(() => MigrateAsync(DeviceKind.Sample, bytes, n, cancellationToken)).ConfigureAwait(false);
        Run image1 = default, imageN = default;
        if (image)
        {
            image1 = await FastestAsync(() => MigrateAsync(DeviceKind.MemoryImage, bytes, 1, cancellationToken)).ConfigureAwait(false);
            imageN = n == 1 ? image1 : await FastestAsync(() => MigrateAsync(DeviceKind.MemoryImage, bytes, n, cancellationToken)).ConfigureAwait(false);
        }
        var sampleEngine = await FastestAsync(() => InProcessAsync(DeviceKind.Sample, bytes, cancellationToken)).ConfigureAwait(false);
        var imageEngine = image ? await FastestAsync(() => InProcessAsync(DeviceKind.MemoryImage, bytes, cancellationToken)).ConfigureAwait(false) : default;

        // The raw references read a source as large as the device state and write a destination as large as the
        // stream, both made and touched before any clock starts, as the migrations read and write their devices.
        long longest = Math.Max(sampleN.Bytes, imageN.Bytes);
        var source = new BenchBuffer(bytes, random: true);
        var destination = new BenchBuffer(longest, random: false);
        var hot = new BenchBuffer(1 << 20, random: true);
        var rawSample = await FastestAsync(() => RawCopyAsync(sampleN.Bytes, source, destination, tls: false, cancellationToken)).ConfigureAwait(false);
        var rawImage = image ? await FastestAsync(() => RawCopyAsync(imageN.Bytes, source, destination, tls: false, cancellationToken)).ConfigureAwait(false) : default;
        var rawTls = useTls ? await FastestAsync(() => RawCopyAsync(sampleN.Bytes, source, destination, tls: true, cancellationToken)).ConfigureAwait(false) : default;
        var rawHot = await FastestAsync(() => RawCopyAsync(sampleN.Bytes, hot, hot, tls: false, cancellationToken)).ConfigureAwait(false);
        var transport1 = await FastestAsync(() => TransportOnlyAsync(sampleN.Bytes, 1, source, destination, cancellationToken)).ConfigureAwait(false);
        var transportN = n == 1 ? transport1 : await FastestAsync(() => TransportOnlyAsync(sampleN.Bytes, n, source, destination, cancellationToken)).ConfigureAwait(false);

        Report("migration, sample device, 1 channel", sample1);
        if (n != 1)
            Report($"migration, sample device, {n} channels", sampleN);
        if (image)
        {
            Report("migration, memory-image device, 1 channel", image1);
            if (n != 1)
                Report($"migration, memory-image device, {n} channels", imageN);
        }
        else
        {
            Line($"(memory-image rows skipped: one image holds at most {Units.FormatBytes(MemoryImageDevice.MaxSize)})");
        }
        Report("raw TCP copy (sample stream), 1 connection", rawSample);
        if (image)
            Report("raw TCP copy (image stream), 1 connection", rawImage);
        if (useTls)
            Report("raw TLS copy (sample stream), 1 connection", rawTls);
        Report("engine in process, no TCP, sample device", sampleEngine);
        if (image)
            Report("engine in process, no TCP, memory image", imageEngine);
        Report(useTls ? "transport only (TLS), 1 channel" : "transport only, 1 channel", transport1);
        if (n != 1)
            Report(useTls ? $"transport only (TLS), {n} channels" : $"transport only, {n} channels", transportN);
        Report("context: raw TCP copy, hot 1 MiB buffers", rawHot);

        string over = useTls ? $"TLS over TCP {Path}" : $"TCP {Path}";
        var sampleBest = Best(sample1, sampleN);
        RatioLine("sample device", over, n, rawSample, sampleBest);
        if (image)
            RatioLine("memory-image device", over, n, rawImage, Best(image1, imageN));
        if (useTls)
        {
            string imageTls = image ? F($", memory-image device {Ratio(rawTls, Best(image1, imageN)):0.00}") : "";
            Line($"context: migration vs the raw TLS copy: sample device {Ratio(rawTls, sampleBest):0.00}{imageTls}");
        }
        Line($"context: migration vs the hot-buffer raw TCP copy (sample device; the reference before 2026-11-23): {Ratio(rawHot, sampleBest):0.00}");
        string imageEngineRatio = image ? F($", memory-image device {Ratio(rawImage, imageEngine):0.00}") : "";
        Line($"context: engine in process without TCP vs the raw TCP copy: sample device {Ratio(rawSample, sampleEngine):0.00}{imageEngineRatio}");
        string imageSpeedup = image ? F($", {image1.Time / imageN.Time:0.00}x (memory-image device)") : "";
        Line($"speedup {n} channels over 1: {sample1.Time / sampleN.Time:0.00}x (sample device){imageSpeedup}");
    }

    private static Run Best(Run a, Run b) => a.Time <= b.Time ? a : b;

    private static async Task<Run> FastestAsync(Func<Task<Run>> measure)
    {
        var best = await measure().ConfigureAwait(false);
        for (int i = 1; i < s_runs; i++)
            best = Best(best, await measure().ConfigureAwait(false));
        return best;
    }

    private static double Ratio(Run raw, Run measured) => raw.Time / measured.Time;

    private static void RatioLine(string device, string over, int n, Run raw, Run best)
    {
        double ratio = Ratio(raw, best);
        string runs = n == 1 ? "1 channel" : F($"best of 1 and {n} channels");
        Line($"ratio migration/raw ({device}, {runs}, over {over}, vs a raw TCP copy of the same {Units.FormatBytes(raw.Bytes)} over {Path}): {ratio:0.000}; target >= 0.800: {(ratio >= 0.8 ? "met" : "NOT met")}");
    }

    private static string F(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);

    private static void Line(FormattableString text) => Console.WriteLine(F(text));

    private static void Report(string what, Run run)
        => Line($"{what,-46} {Units.FormatBytes(run.Bytes),10} in {run.Time.TotalSeconds,7:0.000} s = {Units.FormatBytes(run.Bytes / run.Time.TotalSeconds)}/s");

    /// <summary>A throw-away self-signed certificate for 127.0.0.1, trusted by the sender as its own CA.</summary>
    private static (NetSecurityOptions Send, NetSecurityOptions Receive) MakeTls()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=vfio-mig bench", key, HashAlgorithmName.SHA256);
        var san = new SubjectAlternativeNameBuilder();
        san.AddIpAddress(IPAddress.Loopback);
        request.CertificateExtensions.Add(san.Build());
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1")], false));
        using var made = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddHours(1));
        var certificate = X509CertificateLoader.LoadPkcs12(made.Export(X509ContentType.Pkcs12), null);
        var trusted = new X509Certificate2Collection(X509CertificateLoader.LoadCertificate(made.RawData));
        return (new NetSecurityOptions { UseTls = true, TrustedCertificates = trusted }, new NetSecurityOptions { UseTls = true, Certificate = certificate, AllowAnonymousSenders = true });
    }

    private static (MigrationDevice Source, MigrationDevice Destination) MakeDevices(DeviceKind kind, long bytes) => kind switch
    {
        DeviceKind.Sample => (new SampleDevice(SampleDeviceOptions.Default with { SizeBytes = bytes, Seed = 1 }), new SampleDevice(SampleDeviceOptions.Default with { SizeBytes = bytes, Seed = 2 })),
        _ => (new MemoryImageDevice(bytes, seed: 1), new MemoryImageDevice(bytes, seed: 2)),
    };

    private static void CheckSameState(MigrationDevice source, MigrationDevice destination)
    {
        bool same = (source, destination) switch
        {
            (SampleDevice s, SampleDevice d) => s.ComputeSha256().AsSpan().SequenceEqual(d.ComputeSha256()),
            (MemoryImageDevice s, MemoryImageDevice d) => s.Image.SequenceEqual(d.Image),
            _ => false,
        };
        if (!same)
            throw new VfioException(Errno.EIO, "bench tcp", "the destination does not match the source");
    }

    /// <summary>A full migration (setup, pre-copy, stop-copy, start, digest exchange) over loopback; returns its time and the stream bytes.</summary>
    private static async Task<Run> MigrateAsync(DeviceKind kind, long bytes, int channels, CancellationToken cancellationToken, bool report = true)
    {
        var (sourceDevice, destinationDevice) = MakeDevices(kind, bytes);
        using var _s = sourceDevice;
        using var _d = destinationDevice;
        await using var source = new InProcessMigrationDevice(sourceDevice, "bench:source");
        await using var destination = new InProcessMigrationDevice(destinationDevice, "bench:destination");
        await using var listener = NetListener.Bind(Path, 0);
        BenchSupport.Settle();
        var clock = Stopwatch.StartNew();
        var accept = listener.AcceptSessionAsync(s_receive, null, cancellationToken);
        await using var sender = await NetSenderSession.ConnectAsync(Path, listener.LocalEndPoint.Port, channels, s_send, null, cancellationToken).ConfigureAwait(false);
        await using var receiver = await accept.ConfigureAwait(false);
        var receive = Task.Run(() => NetMigration.ReceiveAsync(receiver, [destination], MigrationOptions.Default, _ => ValueTask.FromResult(NetDigest.None("checked after the timed run")), null, cancellationToken: cancellationToken), cancellationToken);
        var result = await NetMigration.SendAsync(sender, [source], MigrationOptions.Default, _ => ValueTask.FromResult(NetDigest.None("")), null, cancellationToken: cancellationToken).ConfigureAwait(false);
        await receive.ConfigureAwait(false);
        var elapsed = clock.Elapsed;
        var st = result.Statistics;
        if (report)
            Line($"  ({(kind == DeviceKind.Sample ? "sample device" : "memory-image device")}, {channels} channel(s): setup {st.SetupTime.TotalMilliseconds:0} ms, pre-copy {st.PreCopyTime.TotalMilliseconds:0} ms in {st.Rounds} round(s), stop-copy {st.StopCopyTime.TotalMilliseconds:0} ms, downtime {st.Downtime.TotalMilliseconds:0} ms, engine total {st.TotalTime.TotalMilliseconds:0} ms)");
        CheckSameState(sourceDevice, destinationDevice);
        return new Run(elapsed, st.StreamBytes);
    }

    /// <summary>The engine over in-memory pipes: the device and engine cost without any network.</summary>
    private static async Task<Run> InProcessAsync(DeviceKind kind, long bytes, CancellationToken cancellationToken)
    {
        var (sourceDevice, destinationDevice) = MakeDevices(kind, bytes);
        using var _s = sourceDevice;
        using var _d = destinationDevice;
        await using var source = new InProcessMigrationDevice(sourceDevice, "bench:source");
        await using var destination = new InProcessMigrationDevice(destinationDevice, "bench:destination");
        BenchSupport.Settle();
        var clock = Stopwatch.StartNew();
        var statistics = await MigrationEngine.MigrateAsync([source], [destination], MigrationOptions.Default, null, cancellationToken).ConfigureAwait(false);
        var elapsed = clock.Elapsed;
        CheckSameState(sourceDevice, destinationDevice);
        return new Run(elapsed, statistics.StreamBytes);
    }

    /// <summary>
    /// The same bytes through the session layer alone (framing, striping, reassembly), without devices or engine:
    /// through the session pipes the engine uses, filled from <paramref name="from"/> and drained into <paramref name="into"/>.
    /// </summary>
    private static async Task<Run> TransportOnlyAsync(long bytes, int channels, BenchBuffer from, BenchBuffer into, CancellationToken cancellationToken)
    {
        await using var listener = NetListener.Bind(Path, 0);
        var accept = listener.AcceptSessionAsync(s_receive, null, cancellationToken);
        await using var sender = await NetSenderSession.ConnectAsync(Path, listener.LocalEndPoint.Port, channels, s_send, null, cancellationToken).ConfigureAwait(false);
        await using var receiver = await accept.ConfigureAwait(false);
        BenchSupport.Settle();
        var clock = Stopwatch.StartNew();
        var reader = Task.Run(async () =>
        {
            var pipe = receiver.CreateMigrationReader();
            long got = 0;
            while (true)
            {
                var result = await pipe.ReadAsync(cancellationToken).ConfigureAwait(false);
                foreach (var piece in result.Buffer)
                {
                    for (var left = piece; !left.IsEmpty;)
                    {
                        var target = into.At(got, left.Length);
                        left.Span[..target.Length].CopyTo(target.Span);
                        left = left[target.Length..];
                        got += target.Length;
                    }
                }
                pipe.AdvanceTo(result.Buffer.End);
                if (result.IsCompleted)
                    break;
            }
            await pipe.CompleteAsync().ConfigureAwait(false);
        }, cancellationToken);
        var writer = sender.CreateMigrationWriter();
        for (long sent = 0; sent < bytes;)
        {
            var piece = from.At(sent, Math.Min(1 << 20, bytes - sent));
            piece.Span.CopyTo(writer.GetSpan(piece.Length));
            writer.Advance(piece.Length);
            await writer.FlushAsync(cancellationToken).ConfigureAwait(false);
            sent += piece.Length;
        }
        await writer.CompleteAsync().ConfigureAwait(false);
        await sender.CompleteAsync(cancellationToken).ConfigureAwait(false);
        await reader.ConfigureAwait(false);
        return new Run(clock.Elapsed, bytes);
    }

    /// <summary>
    /// Copies <paramref name="bytes"/> over one loopback connection (plain, or TLS with the sessions' certificate
    /// and options) from <paramref name="from"/> into <paramref name="into"/>, in sends of 1 MiB.
    /// </summary>
    private static async Task<Run> RawCopyAsync(long bytes, BenchBuffer from, BenchBuffer into, bool tls, CancellationToken cancellationToken)
    {
        using var listener = new Socket(SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(1);
        var client = new Socket(SocketType.Stream, ProtocolType.Tcp);
        NetChannel.Tune(client);
        var acceptTask = listener.AcceptAsync(cancellationToken).AsTask();
        await client.ConnectAsync(listener.LocalEndPoint!, cancellationToken).ConfigureAwait(false);
        var server = await acceptTask.ConfigureAwait(false);
        NetChannel.Tune(server);
        System.IO.Stream sending = new NetworkStream(client, ownsSocket: true);
        System.IO.Stream receiving = new NetworkStream(server, ownsSocket: true);
        try
        {
            if (tls)
            {
                var serverSide = NetTls.AuthenticateServerAsync(receiving, "bench", s_receive, cancellationToken);
                sending = await NetTls.AuthenticateClientAsync(sending, Path, s_send, cancellationToken).ConfigureAwait(false);
                receiving = await serverSide.ConfigureAwait(false);
            }
            BenchSupport.Settle();
            var clock = Stopwatch.StartNew();
            var reader = Task.Run(() => ReceiveAllAsync(receiving, bytes, into, cancellationToken), cancellationToken);
            await SendAllAsync(sending, bytes, from, cancellationToken).ConfigureAwait(false);
            await reader.ConfigureAwait(false);
            return new Run(clock.Elapsed, bytes);
        }
        finally
        {
            await sending.DisposeAsync().ConfigureAwait(false);
            await receiving.DisposeAsync().ConfigureAwait(false);
        }
    }

    private static async Task SendAllAsync(System.IO.Stream stream, long bytes, BenchBuffer from, CancellationToken cancellationToken)
    {
        for (long sent = 0; sent < bytes;)
        {
            var piece = from.At(sent, Math.Min(1 << 20, bytes - sent));
            await stream.WriteAsync(piece, cancellationToken).ConfigureAwait(false);
            sent += piece.Length;
        }
    }

    private static async Task ReceiveAllAsync(System.IO.Stream stream, long bytes, BenchBuffer into, CancellationToken cancellationToken)
    {
        for (long got = 0; got < bytes;)
        {
            int r = await stream.ReadAsync(into.At(got, bytes - got), cancellationToken).ConfigureAwait(false);
            if (r == 0)
                throw new VfioException(Errno.ECONNRESET, "bench tcp", "the stream ended early");
            got += r;
        }
    }
}
