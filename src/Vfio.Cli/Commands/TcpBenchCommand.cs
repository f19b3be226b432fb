using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Vfio.Engine;
using Vfio.Migration;
using Vfio.Net;
using Vfio.Sample;

namespace Vfio.Cli.Commands;

/// <summary><c>vfio-mig bench tcp</c>: a migration over TCP (1 and N channels) against a raw TCP copy of the same bytes.</summary>
internal static class TcpBenchCommand
{
    public static Command Create()
    {
        var size = new Option<string>("--size") { Description = "Device state size (the sample device)", DefaultValueFactory = _ => "1GiB" };
        var channels = new Option<int>("--channels") { Description = "Channels of the multi-channel run (compared with 1)", DefaultValueFactory = _ => 4 };
        var tls = new Option<bool>("--tls") { Description = "Run the migrations and the transport-only rows over TLS (a throw-away certificate made in process)" };
        var command = new Command("tcp", "Migrate a sample device over loopback TCP with 1 and N channels and compare with a raw TCP copy of the same bytes in the same run.")
        {
            size, channels, tls,
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
                (s_send, s_receive) = useTls ? MakeTls() : (NetSecurityOptions.InsecureDefault, NetSecurityOptions.InsecureDefault);
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"bench tcp: {Units.FormatBytes(bytes)} sample device, path 127.0.0.1 loopback, sender and receiver in this process, {Environment.ProcessorCount} CPUs, {(useTls ? "TLS (raw copy stays plain)" : "no TLS")}"));

                await MigrateAsync(Math.Min(bytes, 16L << 20), 2, cancellationToken, report: false).ConfigureAwait(false); // warm-up (JIT), not reported
                await RawCopyAsync(16L << 20, cancellationToken).ConfigureAwait(false);
                var (one, oneBytes) = await MigrateAsync(bytes, 1, cancellationToken).ConfigureAwait(false);
                Report("migration, 1 channel", oneBytes, one);
                var (many, manyBytes) = n == 1 ? (one, oneBytes) : await MigrateAsync(bytes, n, cancellationToken).ConfigureAwait(false);
                if (n != 1)
                    Report($"migration, {n} channels", manyBytes, many);
                var raw = await RawCopyAsync(manyBytes, cancellationToken).ConfigureAwait(false);
                Report("raw TCP copy, 1 connection", manyBytes, raw);
                var inProcess = await InProcessAsync(bytes, cancellationToken).ConfigureAwait(false);
                Report("engine in process, no TCP", manyBytes, inProcess);
                var transport1 = await TransportOnlyAsync(manyBytes, 1, cancellationToken).ConfigureAwait(false);
                Report("transport only, 1 channel", manyBytes, transport1);
                if (n != 1)
                    Report($"transport only, {n} channels", manyBytes, await TransportOnlyAsync(manyBytes, n, cancellationToken).ConfigureAwait(false));

                double best = Math.Min(one.TotalSeconds, many.TotalSeconds);
                double ratio = raw.TotalSeconds / best;
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"ratio migration/raw: {ratio:0.00} (best migration run vs raw copy of {Units.FormatBytes(manyBytes)}; target >= 0.80: {(ratio >= 0.8 ? "met" : "NOT met")})"));
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"ceiling set by devices + engine without TCP: {raw.TotalSeconds / inProcess.TotalSeconds:0.00}; migration vs that ceiling: {inProcess.TotalSeconds / best:0.00}"));
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"speedup {n} channels over 1: {one.TotalSeconds / many.TotalSeconds:0.00}x"));
                return 0;
            }
            catch (Exception e) when (e is VfioException or MigrationException or IOException)
            {
                return NetCli.Fail(e, "bench tcp");
            }
        });
        return command;
    }

    private static NetSecurityOptions s_send = NetSecurityOptions.InsecureDefault;
    private static NetSecurityOptions s_receive = NetSecurityOptions.InsecureDefault;

    /// <summary>A throw-away self-signed certificate for 127.0.0.1, trusted by the sender as its own CA.</summary>
    private static (NetSecurityOptions Send, NetSecurityOptions Receive) MakeTls()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=vfio-mig bench", key, HashAlgorithmName.SHA256);
        var san = new SubjectAlternativeNameBuilder();
        san.AddIpAddress(IPAddress.Loopback);
        request.CertificateExtensions.Add(san.Build());
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        using var made = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddHours(1));
        var certificate = X509CertificateLoader.LoadPkcs12(made.Export(X509ContentType.Pkcs12), null);
        var trusted = new X509Certificate2Collection(X509CertificateLoader.LoadCertificate(made.RawData));
        return (new NetSecurityOptions { UseTls = true, TrustedCertificates = trusted }, new NetSecurityOptions { UseTls = true, Certificate = certificate });
    }

    private static void Report(string what, long bytes, TimeSpan time)
        => Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{what,-28} {Units.FormatBytes(bytes),10} in {time.TotalSeconds,7:0.000} s = {Units.FormatBytes(bytes / time.TotalSeconds)}/s"));

    /// <summary>A full migration (setup, pre-copy, stop-copy, start, digest exchange) over loopback; returns its time and the stream bytes.</summary>
    private static async Task<(TimeSpan, long)> MigrateAsync(long bytes, int channels, CancellationToken cancellationToken, bool report = true)
    {
        using var sourceDevice = new SampleDevice(SampleDeviceOptions.Default with { SizeBytes = bytes, Seed = 1 });
        using var destinationDevice = new SampleDevice(SampleDeviceOptions.Default with { SizeBytes = bytes, Seed = 2 });
        await using var source = new InProcessMigrationDevice(sourceDevice, "sample:source");
        await using var destination = new InProcessMigrationDevice(destinationDevice, "sample:destination");
        await using var listener = NetListener.Bind("127.0.0.1", 0);
        var clock = Stopwatch.StartNew();
        var accept = listener.AcceptSessionAsync(s_receive, null, cancellationToken);
        await using var sender = await NetSenderSession.ConnectAsync("127.0.0.1", listener.LocalEndPoint.Port, channels, s_send, null, cancellationToken).ConfigureAwait(false);
        await using var receiver = await accept.ConfigureAwait(false);
        var receive = Task.Run(() => NetMigration.ReceiveAsync(receiver, [destination], MigrationOptions.Default, _ => ValueTask.FromResult(NetDigest.None("checked after the timed run")), null, cancellationToken: cancellationToken), cancellationToken);
        var result = await NetMigration.SendAsync(sender, [source], MigrationOptions.Default, _ => ValueTask.FromResult(NetDigest.None("")), null, cancellationToken: cancellationToken).ConfigureAwait(false);
        await receive.ConfigureAwait(false);
        var elapsed = clock.Elapsed;
        var st = result.Statistics;
        if (report)
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  ({channels} channel(s): setup {st.SetupTime.TotalMilliseconds:0} ms, pre-copy {st.PreCopyTime.TotalMilliseconds:0} ms in {st.Rounds} round(s), stop-copy {st.StopCopyTime.TotalMilliseconds:0} ms, downtime {st.Downtime.TotalMilliseconds:0} ms, engine total {st.TotalTime.TotalMilliseconds:0} ms)"));
        if (!sourceDevice.ComputeSha256().AsSpan().SequenceEqual(destinationDevice.ComputeSha256()))
            throw new VfioException(Errno.EIO, "bench tcp", "the destination does not match the source");
        return (elapsed, result.Statistics.StreamBytes);
    }

    /// <summary>The engine over in-memory pipes: the device and engine cost without any network.</summary>
    private static async Task<TimeSpan> InProcessAsync(long bytes, CancellationToken cancellationToken)
    {
        using var sourceDevice = new SampleDevice(SampleDeviceOptions.Default with { SizeBytes = bytes, Seed = 1 });
        using var destinationDevice = new SampleDevice(SampleDeviceOptions.Default with { SizeBytes = bytes, Seed = 2 });
        await using var source = new InProcessMigrationDevice(sourceDevice, "sample:source");
        await using var destination = new InProcessMigrationDevice(destinationDevice, "sample:destination");
        var clock = Stopwatch.StartNew();
        await MigrationEngine.MigrateAsync([source], [destination], MigrationOptions.Default, null, cancellationToken).ConfigureAwait(false);
        return clock.Elapsed;
    }

    /// <summary>The same bytes through the session layer alone (framing, CRC, striping, reassembly), without devices or engine.</summary>
    private static async Task<TimeSpan> TransportOnlyAsync(long bytes, int channels, CancellationToken cancellationToken)
    {
        await using var listener = NetListener.Bind("127.0.0.1", 0);
        var accept = listener.AcceptSessionAsync(s_receive, null, cancellationToken);
        await using var sender = await NetSenderSession.ConnectAsync("127.0.0.1", listener.LocalEndPoint.Port, channels, s_send, null, cancellationToken).ConfigureAwait(false);
        await using var receiver = await accept.ConfigureAwait(false);
        byte[] chunk = new byte[1 << 20];
        new Random(3).NextBytes(chunk);
        var clock = Stopwatch.StartNew();
        var reader = Task.Run(async () =>
        {
            byte[] sink = new byte[1 << 20];
            while (await receiver.MigrationStream.ReadAsync(sink, cancellationToken).ConfigureAwait(false) > 0)
            {
            }
        }, cancellationToken);
        for (long sent = 0; sent < bytes; sent += chunk.Length)
            await sender.MigrationStream.WriteAsync(chunk.AsMemory(0, (int)Math.Min(chunk.Length, bytes - sent)), cancellationToken).ConfigureAwait(false);
        await sender.CompleteAsync(cancellationToken).ConfigureAwait(false);
        await reader.ConfigureAwait(false);
        return clock.Elapsed;
    }

    /// <summary>Copies <paramref name="bytes"/> over one loopback TCP connection (1 MiB writes, reads discarded).</summary>
    private static async Task<TimeSpan> RawCopyAsync(long bytes, CancellationToken cancellationToken)
    {
        using var listener = new Socket(SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(1);
        using var client = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        var acceptTask = listener.AcceptAsync(cancellationToken).AsTask();
        await client.ConnectAsync(listener.LocalEndPoint!, cancellationToken).ConfigureAwait(false);
        using var server = await acceptTask.ConfigureAwait(false);
        byte[] chunk = new byte[1 << 20];
        new Random(3).NextBytes(chunk);
        var clock = Stopwatch.StartNew();
        var reader = Task.Run(async () =>
        {
            byte[] sink = new byte[1 << 20];
            long got = 0;
            while (got < bytes)
            {
                int r = await server.ReceiveAsync(sink, SocketFlags.None, cancellationToken).ConfigureAwait(false);
                if (r == 0)
                    throw new VfioException(Errno.ECONNRESET, "bench tcp raw copy", "the connection closed early");
                got += r;
            }
        }, cancellationToken);
        long sent = 0;
        while (sent < bytes)
        {
            int len = (int)Math.Min(chunk.Length, bytes - sent);
            sent += await client.SendAsync(chunk.AsMemory(0, len), SocketFlags.None, cancellationToken).ConfigureAwait(false);
        }
        await reader.ConfigureAwait(false);
        return clock.Elapsed;
    }
}
