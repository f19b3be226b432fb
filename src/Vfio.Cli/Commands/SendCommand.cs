using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Vfio.Engine;
using Vfio.Kernel;
using Vfio.Migration;
using Vfio.Net;

namespace Vfio.Cli.Commands;

/// <summary><c>vfio-mig send</c>: the source host of a host-to-host migration over TCP.</summary>
internal static class SendCommand
{
    public static Command Create()
    {
        var from = new Option<string>("--from") { Description = "Source device: sample:[options], unix:PATH or vfio:NAME", Required = true };
        var to = new Option<string>("--to") { Description = "The receiver: tcp://HOST:PORT", Required = true };
        var tlsCa = new Option<string?>("--tls-ca") { Description = "PEM CA the receiver's certificate must chain to (enables TLS)" };
        var tlsCert = new Option<string?>("--tls-cert") { Description = "PEM client certificate for mutual TLS (needs --tls-key)" };
        var tlsKey = new Option<string?>("--tls-key") { Description = "PEM private key of --tls-cert" };
        var token = NetCli.TokenFile();
        var insecure = NetCli.Insecure();
        var revocation = NetCli.Revocation();
        var channels = new Option<int>("--channels") { Description = "TCP connections to spread the device data over (1..64)", DefaultValueFactory = _ => 1 };
        var downtime = new Option<string>("--downtime-limit") { Description = "Allowed downtime; pre-copy switches over when the rest fits", DefaultValueFactory = _ => "300ms" };
        var json = new Option<bool>("--json") { Description = "Print the result as one JSON object" };
        var showProgress = new Option<bool>("--progress") { Description = "Print engine progress lines (phase, round, bytes) on stderr" };
        var payloadCrc = new Option<bool>("--payload-crc") { Description = "Also CRC32C every data payload in the transport (the migration stream already checks itself)" };
        var idle = NetCli.IdleTimeout();
        var handshake = NetCli.HandshakeTimeout();
        var connect = new Option<string>("--connect-timeout") { Description = "Longest wait for the TCP connect", DefaultValueFactory = _ => "10s" };
        var precopy = PreCopyChoice.Create();
        var command = new Command("send", "Send a live migration of a device to a vfio-mig receiver over TCP (TLS or token).")
        {
            from, to, tlsCa, tlsCert, tlsKey, token, insecure, revocation, channels, downtime, json, payloadCrc, showProgress, idle, handshake, connect, precopy,
        };
        command.SetAction(async (parse, cancellationToken) =>
        {
            bool asJson = parse.GetValue(json);
            IVfioMigrationDevice? device = null;
            byte[] before = [];
            bool committed = false;
            try
            {
                var (host, port) = NetCli.ParseEndpoint(parse.GetValue(to)!, "--to", requireScheme: true);
                string? caPath = parse.GetValue(tlsCa), certPath = parse.GetValue(tlsCert), keyPath = parse.GetValue(tlsKey), tokenPath = parse.GetValue(token);
                if (certPath is null != (keyPath is null))
                    return Usage("--tls-cert and --tls-key go together");
                var security = new NetSecurityOptions
                {
                    UseTls = caPath is not null || certPath is not null,
                    TrustedCertificates = caPath is null ? null : NetCli.LoadCa(caPath, "--tls-ca"),
                    Certificate = certPath is null ? null : NetCli.LoadCertificate(certPath, keyPath, "--tls-cert"),
                    Token = tokenPath is null ? null : NetToken.ReadFile(tokenPath),
                    Insecure = parse.GetValue(insecure),
                    Revocation = NetCli.ParseRevocation(parse.GetValue(revocation)!),
                    IdleTimeout = NetCli.Duration(parse.GetValue(idle)!, "idle-timeout"),
                    HandshakeTimeout = NetCli.Duration(parse.GetValue(handshake)!, "handshake-timeout"),
                    ConnectTimeout = NetCli.Duration(parse.GetValue(connect)!, "connect-timeout"),
                };
                security.Validate("send");
                int n = parse.GetValue(channels);
                if (n is < 1 or > NetProtocol.MaxChannels)
                    return Usage($"--channels must be 1..{NetProtocol.MaxChannels}");
                var options = MigrationOptions.Default with { DowntimeLimit = Units.ParseDuration(parse.GetValue(downtime)!, "downtime-limit") };

                var address = DeviceAddress.Parse(parse.GetValue(from)!);
                device = await address.OpenAsync(cancellationToken).ConfigureAwait(false);
                options = await PreCopyChoice.ApplyAsync(options, parse.GetValue(precopy)!, device, asJson ? null : Console.Out, cancellationToken).ConfigureAwait(false);
                // Local reads only (sample, kernel): a vfio-user source would cost a full BAR0 transfer and a pause here.
                before = device is InProcessMigrationDevice or KernelMigrationDevice ? (await DeviceDigest.ComputeAsync(device, cancellationToken).ConfigureAwait(false)).Value : [];
                if (!asJson && before.Length > 0)
                    Console.WriteLine($"source {address} sha256 before migration {NetCli.Hex(before)}");

                ulong? bar0 = await DeviceDigest.Bar0SizeAsync(device, cancellationToken).ConfigureAwait(false);
                await using var session = await NetSenderSession.ConnectAsync(host, port, n, security, new NetSessionOptions { PayloadCrc = parse.GetValue(payloadCrc) }, cancellationToken).ConfigureAwait(false);
                string mode = NetCli.DescribeMode(security, receiver: false, "send");
                if (!asJson)
                    Console.WriteLine($"connected to {host}:{port}: {n} channel(s), {mode}");
                var dev = device;
                var result = await NetMigration.SendAsync(session, [device], options,
                    ct => DeviceDigest.ComputeAsync(dev, ct, bar0), parse.GetValue(showProgress) ? new MigrationProgressView(false, Console.Error, options.DowntimeLimit) : null, () => committed = true, cancellationToken).ConfigureAwait(false);
                var s = result.Statistics;
                double seconds = s.TotalTime.TotalSeconds;
                if (asJson)
                {
                    Console.WriteLine(Json(result, n, mode, null));
                }
                else
                {
                    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"migrated {Units.FormatBytes(s.TotalBytes)} of device state ({Units.FormatBytes(s.StreamBytes)} on the wire) in {seconds:0.000} s over {n} channel(s): {Units.FormatBytes(s.StreamBytes / Math.Max(seconds, 1e-9))}/s; pre-copy {(s.PreCopyUsed ? $"{s.Rounds} round(s)" : "not used")}; downtime {s.Downtime.TotalMilliseconds:0.0} ms (limit {options.DowntimeLimit.TotalMilliseconds:0} ms)"));
                    if (result.SourceDigest.Length > 0)
                        Console.WriteLine($"source sha256 {NetCli.Hex(result.SourceDigest)}");
                    if (result.Status.Digest.Length > 0)
                        Console.WriteLine($"destination sha256 {NetCli.Hex(result.Status.Digest)}");
                }
                switch (result.Verdict)
                {
                    case 1:
                        if (!asJson)
                            Console.WriteLine($"verified: destination matches source (sha256 {NetCli.Hex(result.SourceDigest)})");
                        return 0;
                    case 2:
                        Console.Error.WriteLine("vfio-mig send: error: EIO: the destination state differs from the source");
                        return 1;
                    default:
                        if (!asJson)
                            Console.WriteLine(result.Note);
                        return 0;
                }
            }
            catch (Exception e) when (e is VfioException or MigrationException or OperationCanceledException or IOException)
            {
                if (asJson)
                {
                    var (errno, message) = NetMigration.Describe(e);
                    Console.WriteLine(Json(null, 0, "", (errno, message)));
                }
                int code = NetCli.Fail(e, "send");
                if (committed)
                    Console.Error.WriteLine("vfio-mig send: the destination reported its devices RUNNING before this failure: the migration completed, so the source stays stopped (not resumed)");
                if (device is not null)
                    await ReportSourceAsync(device, before).ConfigureAwait(false);
                return code;
            }
            finally
            {
                if (device is not null)
                    await device.DisposeAsync().ConfigureAwait(false);
            }
        });
        return command;
    }

    private static async Task ReportSourceAsync(IVfioMigrationDevice device, byte[] before)
    {
        try
        {
            var state = await device.GetStateAsync().ConfigureAwait(false);
            var after = before.Length == 0 ? [] : (await DeviceDigest.ComputeAsync(device, CancellationToken.None).ConfigureAwait(false)).Value;
            string digest = after.Length == 0 ? "" : after.AsSpan().SequenceEqual(before) ? $", state unchanged (sha256 {NetCli.Hex(after)})" : $", sha256 now {NetCli.Hex(after)} (was {NetCli.Hex(before)}; a running workload changes it)";
            Console.Error.WriteLine($"vfio-mig send: source device {device.Name} is {MigrationStateMachine.Name(state)}{digest}");
        }
        catch (VfioException e)
        {
            Console.Error.WriteLine($"vfio-mig send: error: cannot read the source device's state after the failure: {e.Message}");
        }
    }

    private static string Json(NetMigrationResult? result, int channels, string mode, (Errno Errno, string Message)? error)
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms))
        {
            w.WriteStartObject();
            w.WriteBoolean("ok", error is null && result is not null && result.Verdict != 2);
            if (error is { } err)
            {
                w.WriteString("errno", VfioException.NameOf(err.Errno));
                w.WriteString("error", err.Message);
            }
            if (result is not null)
            {
                var s = result.Statistics;
                w.WriteNumber("channels", channels);
                w.WriteString("security", mode);
                w.WriteNumber("deviceBytes", s.TotalBytes);
                w.WriteNumber("streamBytes", s.StreamBytes);
                w.WriteNumber("preCopyBytes", s.PreCopyBytes);
                w.WriteNumber("stopCopyBytes", s.StopCopyBytes);
                w.WriteBoolean("preCopyUsed", s.PreCopyUsed);
                w.WriteNumber("rounds", s.Rounds);
                w.WriteNumber("totalSeconds", s.TotalTime.TotalSeconds);
                w.WriteNumber("downtimeMs", s.Downtime.TotalMilliseconds);
                w.WriteNumber("throughputBytesPerSecond", s.StreamBytes / Math.Max(s.TotalTime.TotalSeconds, 1e-9));
                w.WriteString("sourceSha256", NetCli.Hex(result.SourceDigest));
                w.WriteString("destinationSha256", NetCli.Hex(result.Status.Digest));
                w.WriteString("verification", result.Verdict switch { 1 => "match", 2 => "mismatch", _ => "skipped" });
                if (result.Status.DigestKind.Length > 0)
                    w.WriteString("digestKind", result.Status.DigestKind);
                if (result.Note.Length > 0)
                    w.WriteString("note", result.Note);
            }
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(ms.ToArray());
    }

    private static int Usage(string message)
    {
        Console.Error.WriteLine($"vfio-mig send: error: EINVAL: {message}");
        return 2;
    }
}
