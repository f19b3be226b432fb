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
    private static TextWriter s_text = Console.Out;

    /// <summary>The ratio the headline (sample device, 1 channel vs 1 raw connection) is held to.</summary>
    private const double Target = 0.6;
    private static CliProgress s_progress = CliProgress.Plain(Console.Out);

    private enum DeviceKind
    {
        Sample,
        MemoryImage,
    }

    /// <summary>One timed run: its duration and the migration-stream bytes it moved.</summary>
    private readonly record struct Run(TimeSpan Time, long Bytes);

    public static Command Create()
    {
        var size = CliOptions.Size("--size", "Device state size (both devices; 1MiB..16GiB, a multiple of 4KiB)", "1GiB", 1 << 20, 16L << 30, multipleOf: 4096);
        var channels = CliOptions.Int("--channels", $"Channels of the multi-channel runs (compared with 1; 1..{NetProtocol.MaxChannels})", 4, 1, NetProtocol.MaxChannels);
        var runs = CliOptions.Int("--runs", "Pairs (migration and raw copy of the same bytes, alternating which goes first) per channel count (1..20); the ratio is their median", 3, 1, 20);
        var json = CliOptions.Json();
        var tls = new Option<bool>("--tls") { Description = "Run the migrations and the transport-only rows over TLS (a throw-away certificate made in process), and add a raw TLS copy" };
        var command = new Command("tcp", "Migrate a sample device over loopback TCP with 1 and N channels, each paired with a raw blocking TCP copy of the same bytes over as many connections.")
        {
            size, channels, runs, tls, json,
        };
        command.WithHelp(addresses: false,
            "vfio-mig bench tcp --size 1GiB --channels 4",
            "vfio-mig bench tcp --size 256MiB --runs 3 --tls");
        command.SetAction(async (parse, cancellationToken) =>
        {
            long bytes = parse.GetValue(size).Bytes;
            int n = parse.GetValue(channels);
            bool useTls = parse.GetValue(tls);
            s_runs = parse.GetValue(runs);
            (s_send, s_receive) = useTls ? MakeTls() : (NetSecurityOptions.InsecureDefault, NetSecurityOptions.InsecureDefault);
            await RunAsync(bytes, n, useTls, parse.GetValue(json), cancellationToken).ConfigureAwait(false);
            return ExitCodes.Success;
        });
        return command;
    }

    private static async Task RunAsync(long bytes, int n, bool useTls, bool asJson, CancellationToken cancellationToken)
    {
        s_text = asJson ? Console.Error : Console.Out;
        s_progress = CliProgress.For(asJson);
        bool image = bytes <= MemoryImageDevice.MaxSize;
        string security = useTls ? "migrations over TLS; the raw references are plain TCP, a raw TLS copy is context" : "no TLS";
        Line($"bench tcp: {Units.FormatBytes(bytes)} sample device, path {Path} loopback, sender and receiver in this process, {Environment.ProcessorCount} CPUs, {security}, {s_runs} pair(s) per channel count");

        // Warm-up, not reported: three rounds, so the hot methods reach their optimised tier (tiering needs 30
        // calls, then compiles in the background) before any clock starts, and that compiling does not share
        // the cores with a timed run.
        var warm = new BenchBuffer(32 << 20, random: true);
        await s_progress.StepAsync("warming up (3 untimed rounds)", async () =>
        {
            for (int round = 0; round < 3; round++)
            {
                await MigrateAsync(DeviceKind.Sample, 32 << 20, 1 + (round % 2), cancellationToken, report: false).ConfigureAwait(false);
                await TransportOnlyAsync(32 << 20, 1 + (round % 2), warm, warm, cancellationToken).ConfigureAwait(false);
            }
        }).ConfigureAwait(false);
        await Task.Delay(200, cancellationToken).ConfigureAwait(false);

        var report = new BenchReport("tcp", bytes, s_runs, Target);
        var counts = n == 1 ? new[] { 1 } : new[] { 1, n };
        var medians = new Dictionary<int, double>();
        var times = new Dictionary<int, List<TimeSpan>>();
        foreach (int c in counts)
        {
            // c channels against c raw connections, paired; the pairs alternate which half runs first.
            var series = report.Add(F($"sample_{c}ch"), F($"raw_tcp_{c}"));
            times[c] = [];
            // The raw reference reads a source as large as the device state and writes a sink as large (both touched
            // before any clock), as the migrations read and write their devices; the channels' socket options.
            using var raw = RawCopy.Start(tcp: true, c, bytes, bytes, NetChannel.SocketBufferBytes);
            report.UsedReference(raw);
            Line($"{raw.Description}");
            long streamBytes = 0;
            for (int i = 0; i < s_runs; i++)
            {
                Run? rawFirst = i % 2 == 1 && streamBytes > 0 ? RawRun(raw, streamBytes) : null;
                var migration = await s_progress.StepAsync(F($"pair {i + 1}, {c} channel(s): migrating"), () => MigrateAsync(DeviceKind.Sample, bytes, c, cancellationToken)).ConfigureAwait(false);
                streamBytes = migration.Bytes;
                var rawRun = rawFirst ?? RawRun(raw, streamBytes);
                series.Pair(streamBytes, migration.Time.TotalSeconds, null, rawRun.Time.TotalSeconds, null);
                times[c].Add(migration.Time);
                Line($"pair {i + 1}, {c} channel(s): migration {Units.FormatBytes(streamBytes / migration.Time.TotalSeconds)}/s, raw TCP copy over {c} connection(s) {Units.FormatBytes(streamBytes / rawRun.Time.TotalSeconds)}/s, ratio {rawRun.Time / migration.Time:0.00}");
            }
            medians[c] = series.MedianRatio;
        }

        // Context, one run each, never a reference; the transport-only and TLS rows copy between buffers as large as
        // the state, as the raw reference does.
        var source = new BenchBuffer(bytes, random: true);
        var destination = new BenchBuffer(bytes, random: false);
        var context = report.Add("context", "");
        var engine = await InProcessAsync(DeviceKind.Sample, bytes, cancellationToken).ConfigureAwait(false);
        Report("context: engine in process, no TCP, sample device", engine);
        context.Context["engine_in_process_bytes_per_second"] = engine.Bytes / engine.Time.TotalSeconds;
        if (image)
        {
            var imageRun = await MigrateAsync(DeviceKind.MemoryImage, bytes, 1, cancellationToken).ConfigureAwait(false);
            Report("context: migration, memory-image device, 1 channel", imageRun);
            context.Context["memory_image_1ch_bytes_per_second"] = imageRun.Bytes / imageRun.Time.TotalSeconds;
        }
        var transport = await TransportOnlyAsync(bytes, 1, source, destination, cancellationToken).ConfigureAwait(false);
        Report(useTls ? "context: transport only (TLS), 1 channel" : "context: transport only, 1 channel", transport);
        context.Context["transport_only_1ch_bytes_per_second"] = transport.Bytes / transport.Time.TotalSeconds;
        if (useTls)
        {
            var rawTls = await RawTlsCopyAsync(bytes, source, destination, cancellationToken).ConfigureAwait(false);
            Report("context: raw TLS copy, 1 connection", rawTls);
            context.Context["raw_tls_1conn_bytes_per_second"] = rawTls.Bytes / rawTls.Time.TotalSeconds;
        }

        string over = useTls ? $"TLS over TCP {Path}" : $"TCP {Path}";
        foreach (int c in counts)
            Line($"ratio ({c} channel(s) vs {c} raw connection(s), sample device over {over}): {medians[c]:0.00} (median of {s_runs} pair(s))");
        if (n != 1)
            Line($"speedup {n} channels over 1: {Median(times[1]) / Median(times[n]):0.00}x (sample device, median times)");
        report.Headline("sample_1ch", medians[1]);
        Line($"ratio: {medians[1]:0.00} (sample device, 1 channel vs 1 raw blocking TCP connection; target >= {Target:0.00}: {(medians[1] >= Target ? "met" : "NOT met")})");
        if (asJson)
            await report.WriteAsync(Console.Out).ConfigureAwait(false);
    }

    private static Run RawRun(RawCopy raw, long bytes) => new(TimeSpan.FromSeconds(raw.Run(bytes).Seconds), bytes);

    private static double Median(List<TimeSpan> times) => times.Order().ElementAt(times.Count / 2).TotalSeconds;

    private static string F(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);

    private static void Line(FormattableString text) => s_text.WriteLine(F(text));

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
        var accept = listener.AcceptSessionAsync(s_receive, null, null, cancellationToken);
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
        var accept = listener.AcceptSessionAsync(s_receive, null, null, cancellationToken);
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

    /// <summary>Context only: the same bytes over one TLS connection with the sessions' certificate and options.</summary>
    private static async Task<Run> RawTlsCopyAsync(long bytes, BenchBuffer from, BenchBuffer into, CancellationToken cancellationToken)
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
            var serverSide = NetTls.AuthenticateServerAsync(receiving, "bench", s_receive, cancellationToken);
            sending = await NetTls.AuthenticateClientAsync(sending, Path, s_send, cancellationToken).ConfigureAwait(false);
            receiving = await serverSide.ConfigureAwait(false);
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
