using System.CommandLine;
using System.Globalization;
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
        var from = CliOptions.Device("--from", "Source device");
        var to = NetCli.Endpoint("--to", "The receiver: tcp://HOST:PORT (vfio-mig receive --listen)", requireScheme: true);
        var tlsCa = new Option<string?>("--tls-ca") { Description = "PEM CA the receiver's certificate must chain to (enables TLS)" };
        var tlsCert = new Option<string?>("--tls-cert") { Description = "PEM client certificate for mutual TLS (needs --tls-key)" };
        var tlsKey = new Option<string?>("--tls-key") { Description = "PEM private key of --tls-cert" };
        var token = NetCli.TokenFile();
        var insecure = NetCli.Insecure();
        var revocation = NetCli.Revocation();
        var channels = CliOptions.Int("--channels", $"TCP connections to spread the device data over (1..{NetProtocol.MaxChannels})", 1, 1, NetProtocol.MaxChannels);
        var downtime = CliOptions.DowntimeLimit();
        var force = CliOptions.ForceSwitchover();
        var json = CliOptions.Json();
        var payloadCrc = new Option<bool>("--payload-crc") { Description = "Also CRC32C every data payload in the transport (the migration stream already checks itself)" };
        var idle = NetCli.IdleTimeout();
        var handshake = NetCli.HandshakeTimeout();
        var connect = CliOptions.ConnectTimeout();
        var precopy = PreCopyChoice.Create();
        var noCompat = CliOptions.NoCompatCheck();
        var stateDir = MigrationRecords.StateDirOption();
        var record = FlightRecords.RecordOption();
        var verbose = CliLogging.Verbose("the session (connection, failures, aborts) and the engine's phases");
        var pauseAt = new Option<string?>("--pause-at") { Description = "Test aid: print 'paused at POINT' and wait there (precopy, stopcopy, started)", Hidden = true };
        var command = new Command("send", "Send a live migration of a device to a vfio-mig receiver over TCP (TLS or token).")
        {
            from, to, tlsCa, tlsCert, tlsKey, token, insecure, revocation, channels, downtime, force, json, payloadCrc, idle, handshake, connect, precopy, noCompat, stateDir, record, verbose, pauseAt,
        };
        command.WithHelp(addresses: true,
            "vfio-mig send --from sample:size=64MiB,dirty-rate=8MiB/s --to tcp://10.0.0.2:7400 --token-file token.txt",
            "vfio-mig send --from unix:./a.sock --to tcp://10.0.0.2:7400 --tls-ca ca.pem --channels 4",
            "vfio-mig send --from vfio:A --to tcp://[fd00::2]:7400 --token-file token.txt --json",
            "vfio-mig send --from unix:./a.sock --to tcp://10.0.0.2:7400 --token-file token.txt --record src.jsonl   # vfio-mig report src.jsonl dst.jsonl");
        NetCli.RequireTogether(command, tlsCert, tlsKey);
        command.SetAction(async (parse, cancellationToken) =>
        {
            bool asJson = parse.GetValue(json);
            IVfioMigrationDevice? device = null;
            byte[] before = [];
            bool committed = false;
            string? dir = parse.GetValue(stateDir);
            var id = Guid.NewGuid();
            using var recorder = FlightRecords.Open(parse.GetValue(record));
            NetSenderSession? wire = null;
            try
            {
                var (host, port) = parse.GetValue(to);
                string? caPath = parse.GetValue(tlsCa), certPath = parse.GetValue(tlsCert), keyPath = parse.GetValue(tlsKey), tokenPath = parse.GetValue(token);
                var security = new NetSecurityOptions
                {
                    UseTls = caPath is not null || certPath is not null,
                    TrustedCertificates = caPath is null ? null : NetCli.LoadCa(caPath, "--tls-ca"),
                    Certificate = certPath is null ? null : NetCli.LoadCertificate(certPath, keyPath, "--tls-cert"),
                    Token = tokenPath is null ? null : NetToken.ReadFile(tokenPath),
                    Insecure = parse.GetValue(insecure),
                    Revocation = NetCli.ParseRevocation(parse.GetValue(revocation)!),
                    IdleTimeout = parse.GetValue(idle).Value,
                    HandshakeTimeout = parse.GetValue(handshake).Value,
                    ConnectTimeout = parse.GetValue(connect).Value,
                };
                security.Validate("send");
                int n = parse.GetValue(channels);
                using var loggerFactory = CliLogging.Create(parse.GetValue(verbose));
                var options = MigrationOptions.Default with
                {
                    LoggerFactory = loggerFactory,
                    DowntimeLimit = parse.GetValue(downtime).Value,
                    NonConvergence = parse.GetValue(force) ? NonConvergencePolicy.ForceSwitchover : NonConvergencePolicy.Fail,
                    MigrationId = id,
                    DecisionStore = MigrationRecords.Open(dir),
                    FlightRecorder = recorder,
                    Checkpoint = MigrateCommand.PauseHook(parse.GetValue(pauseAt)),
                    CheckCompatibility = !parse.GetValue(noCompat),
                };

                var address = parse.GetValue(from)!;
                var progress = CliProgress.For(asJson);
                device = await progress.StepAsync($"connecting to {address}", () => address.OpenAsync(security.ConnectTimeout, loggerFactory, cancellationToken).AsTask()).ConfigureAwait(false);
                options = await PreCopyChoice.ApplyAsync(options, parse.GetValue(precopy)!, device, progress.Out, cancellationToken).ConfigureAwait(false);
                // Local reads only (sample, kernel): a vfio-user source would cost a full BAR0 transfer and a pause here.
                before = device is IDeviceDigestSource { ReadsLocally: true } ? (await DeviceDigest.ComputeAsync(device, cancellationToken).ConfigureAwait(false)).Value : [];
                if (!asJson && before.Length > 0)
                    Console.WriteLine($"source {address} sha256 before migration {NetCli.Hex(before)}");

                ulong? bar0 = await DeviceDigest.Bar0SizeAsync(device, cancellationToken).ConfigureAwait(false);
                await using var session = await progress.StepAsync($"connecting to {host}:{port}", () => NetSenderSession.ConnectAsync(host, port, n, security, new NetSessionOptions { PayloadCrc = parse.GetValue(payloadCrc), LoggerFactory = loggerFactory }, cancellationToken)).ConfigureAwait(false);
                wire = session;
                string mode = NetCli.DescribeMode(security, receiver: false, "send");
                progress.Line($"connected to {host}:{port}: {n} channel(s), {mode}; migration {id}");
                var dev = device;
                var view = progress.Migration(options.DowntimeLimit, (long)(bar0 ?? 0));
                var result = await view.RunAsync(p => NetMigration.SendAsync(session, [dev], options,
                    ct => DeviceDigest.ComputeAsync(dev, ct, bar0), p, () => committed = true, cancellationToken)).ConfigureAwait(false);
                FlightRecords.RecordWire(recorder, "source", session);
                var s = result.Statistics;
                double seconds = s.TotalTime.TotalSeconds;
                if (asJson)
                {
                    CliJsonContext.Write(Console.Out, new SendJson(result.Verdict != 2, id.ToString("D"), address.ToString(), $"tcp://{host}:{port}", n, mode, MigrationJson.From(s),
                        s.StreamBytes / Math.Max(seconds, 1e-9), Verification(result.Verdict), NetCli.Hex(result.SourceDigest), NetCli.Hex(result.Status.Digest),
                        result.Status.DigestKind.Length > 0 ? result.Status.DigestKind : null, result.Note.Length > 0 ? result.Note : null), CliJsonContext.Default.SendJson);
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
                        throw new CliException(ExitCodes.VerificationMismatch, Errno.EIO, "verify", "the destination state differs from the source",
                            ["a destination that changes its own state once RUNNING moves away from the source at once"]);
                    default:
                        if (!asJson)
                            Console.WriteLine(result.Note);
                        return 0;
                }
            }
            catch (Exception e) when (e is VfioException or OperationCanceledException or IOException && e is not CliException { ExitCode: ExitCodes.Usage })
            {
                if (wire is not null)
                    FlightRecords.RecordWire(recorder, "source", wire);
                string recordHint = FlightRecords.Hint(recorder, "send", id, dir);
                if (e is MigrationException { Held: true } && device is not null)
                {
                    // The destination decides: resolve there first; it prints the decision this host then applies.
                    CliErrors.Report("send", e, Console.Error);
                    await MigrationRecords.ReportAsync("send", [(MigrationSide.Source, device)], true, id, dir,
                        [$"on the receiving host: vfio-mig resolve {id} (with its --state-dir, if it has one); it prints the decision",
                         $"then here: {MigrationRecords.ResolveCommand(id, dir)} --decision committed|aborted (the decision it printed)", recordHint]).ConfigureAwait(false);
                    return ExitCodes.Held;
                }
                var hints = new List<string>();
                if (committed)
                    hints.Add($"the migration was committed before this failure: the destination holds the state, so the source stays stopped (not resumed); if the receiver ended held, vfio-mig resolve {id} on its host starts its devices");
                if (device is not null)
                    hints.Add(await DescribeSourceAsync(device, before).ConfigureAwait(false));
                hints.Add(recordHint);
                throw CliException.WithHints(e, [.. hints]);
            }
            finally
            {
                if (device is not null)
                    await device.DisposeAsync().ConfigureAwait(false);
            }
        });
        return command;
    }

    private static string Verification(int verdict) => verdict switch { 1 => "match", 2 => "mismatch", _ => "skipped" };

    private static async Task<string> DescribeSourceAsync(IVfioMigrationDevice device, byte[] before)
    {
        try
        {
            var state = await device.GetStateAsync().ConfigureAwait(false);
            var after = before.Length == 0 ? [] : (await DeviceDigest.ComputeAsync(device, CancellationToken.None).ConfigureAwait(false)).Value;
            string digest = after.Length == 0 ? "" : after.AsSpan().SequenceEqual(before) ? $", state unchanged (sha256 {NetCli.Hex(after)})" : $", sha256 now {NetCli.Hex(after)} (was {NetCli.Hex(before)}; a running workload changes it)";
            return $"source device {device.Name} is {MigrationStateMachine.Name(state)}{digest}";
        }
        catch (VfioException e)
        {
            return $"cannot read the source device's state after the failure: {e.Message}";
        }
    }
}
