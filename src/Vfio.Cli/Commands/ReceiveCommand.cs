using System.CommandLine;
using System.Globalization;
using Vfio.Engine;
using Vfio.Migration;
using Vfio.Net;

namespace Vfio.Cli.Commands;

/// <summary><c>vfio-mig receive</c>: the destination host of a host-to-host migration over TCP.</summary>
internal static class ReceiveCommand
{
    public static Command Create()
    {
        var listen = NetCli.Endpoint("--listen", "HOST:PORT to listen on (an IP; port 0 picks one and prints it)", requireScheme: false);
        var into = CliOptions.Device("--into", "Destination device");
        var tlsCert = new Option<string?>("--tls-cert") { Description = "PEM server certificate (enables TLS; needs --tls-key)" };
        var tlsKey = new Option<string?>("--tls-key") { Description = "PEM private key of --tls-cert" };
        var clientCa = new Option<string?>("--client-ca") { Description = "PEM CA: require a sender certificate issued by it (mutual TLS)" };
        var token = NetCli.TokenFile();
        var insecure = NetCli.Insecure();
        var anonymous = new Option<bool>("--allow-anonymous-senders") { Description = "With TLS and neither --client-ca nor --token-file: accept any sender (refused otherwise)" };
        var revocation = NetCli.Revocation();
        var idle = NetCli.IdleTimeout();
        var handshake = NetCli.HandshakeTimeout();
        var acceptTimeout = new Option<string>("--accept-timeout") { Description = "Give up (ETIMEDOUT) when no authenticated sender has connected within this long; none waits until interrupted", HelpName = "DURATION", DefaultValueFactory = _ => "none" };
        acceptTimeout.Validators.Add(r =>
        {
            if (r.Tokens.Count > 0 && r.Tokens[^1].Value != "none")
            {
                try
                {
                    Units.ParseDuration(r.Tokens[^1].Value, "accept-timeout");
                }
                catch (VfioException e)
                {
                    r.AddError(e.Message);
                }
            }
        });
        var maxQueued = CliOptions.Size("--max-queued", "Most out-of-order channel data held at once", Units.FormatExact(NetSessionOptions.DefaultMaxQueuedBytes), NetProtocol.MaxFramePayload, 16L << 30);
        var json = CliOptions.Json();
        var noCompat = CliOptions.NoCompatCheck();
        var connect = CliOptions.ConnectTimeout();
        var inject = new Option<string?>("--inject-fault") { Description = "Test aid: resume-stop makes the destination fail RESUMING→STOP; start makes it fail to start after the commit", Hidden = true };
        var stateDir = MigrationRecords.StateDirOption();
        var record = FlightRecords.RecordOption();
        var verbose = CliLogging.Verbose("the session (accepted, dropped connections, failures, aborts) and the engine's phases");
        var pauseAt = new Option<string?>("--pause-at") { Description = "Test aid: print 'paused at POINT' and wait there (loaded, committed)", Hidden = true };
        var command = new Command("receive", "Receive a live migration over TCP (TLS or token) into a destination device.")
        {
            listen, into, tlsCert, tlsKey, clientCa, token, insecure, anonymous, revocation, idle, handshake, acceptTimeout, maxQueued, json, connect, inject, noCompat, stateDir, record, verbose, pauseAt,
        };
        command.WithHelp(addresses: true,
            "vfio-mig token new --output token.txt   # mode 0600; copy it to the sender",
            "vfio-mig receive --listen 0.0.0.0:7400 --into sample:size=64MiB,seed=2 --token-file token.txt",
            "vfio-mig receive --listen 127.0.0.1:0 --into unix:./b.sock --tls-cert srv.pem --tls-key srv.key --json",
            "vfio-mig receive --listen 0.0.0.0:7400 --into vfio:B --token-file token.txt --record dst.jsonl   # vfio-mig report src.jsonl dst.jsonl");
        NetCli.RequireTogether(command, tlsCert, tlsKey);
        command.Validators.Add(r =>
        {
            if (r.GetValue(clientCa) is not null && r.GetValue(tlsCert) is null)
                r.AddError("--client-ca needs TLS (--tls-cert and --tls-key)");
            if (r.GetValue(inject) is { } fault && !FaultInjectingDevice.Faults.Contains(fault))
                r.AddError("--inject-fault takes " + string.Join(" or ", FaultInjectingDevice.Faults));
        });
        command.SetAction(async (parse, cancellationToken) =>
        {
            IVfioMigrationDevice? device = null;
            bool committed = false;
            bool engineRan = false;
            string? dir = parse.GetValue(stateDir);
            using var recorder = FlightRecords.Open(parse.GetValue(record));
            NetReceiverSession? wire = null;
            var store = new WatchedMigrationStore(MigrationRecords.Open(dir));
            try
            {
                var (host, port) = parse.GetValue(listen);
                string? certPath = parse.GetValue(tlsCert), keyPath = parse.GetValue(tlsKey), caPath = parse.GetValue(clientCa), tokenPath = parse.GetValue(token);
                bool asJson = parse.GetValue(json);
                var progress = CliProgress.For(asJson);
                var security = new NetSecurityOptions
                {
                    UseTls = certPath is not null,
                    Certificate = certPath is null ? null : NetCli.LoadCertificate(certPath, keyPath, "--tls-cert"),
                    TrustedCertificates = caPath is null ? null : NetCli.LoadCa(caPath, "--client-ca"),
                    Token = tokenPath is null ? null : NetToken.ReadFile(tokenPath),
                    Insecure = parse.GetValue(insecure),
                    AllowAnonymousSenders = parse.GetValue(anonymous),
                    Revocation = NetCli.ParseRevocation(parse.GetValue(revocation)!),
                    IdleTimeout = parse.GetValue(idle).Value,
                    HandshakeTimeout = parse.GetValue(handshake).Value,
                };
                security.ValidateReceiver();
                string acceptText = parse.GetValue(acceptTimeout)!;
                var acceptOptions = new NetAcceptOptions
                {
                    AcceptTimeout = acceptText == "none" ? Timeout.InfiniteTimeSpan : Units.ParseDuration(acceptText, "accept-timeout"),
                    OnDropped = line => Console.Error.WriteLine("vfio-mig receive: " + line),
                };
                using var loggerFactory = CliLogging.Create(parse.GetValue(verbose));
                var sessionOptions = new NetSessionOptions { MaxQueuedBytes = parse.GetValue(maxQueued).Bytes, LoggerFactory = loggerFactory };

                var address = parse.GetValue(into)!;
                device = await progress.StepAsync($"connecting to {address}", () => address.OpenAsync(parse.GetValue(connect).Value, loggerFactory, cancellationToken).AsTask()).ConfigureAwait(false);
                var raw = device;
                if (parse.GetValue(inject) is { } fault)
                    device = new FaultInjectingDevice(device, fault);

                await using var listener = NetListener.Bind(host, port);
                string mode = NetCli.DescribeMode(security, receiver: true, "receive");
                // The line a script waits for; under --json it goes to stderr with the rest of the progress.
                progress.Line($"listening on {listener.LocalEndPoint} ({mode}), destination {address}");
                progress.Out.Flush();
                await using var session = await listener.AcceptSessionAsync(security, sessionOptions, acceptOptions, cancellationToken).ConfigureAwait(false);
                wire = session;
                progress.Line($"sender {session.Peer} connected: {session.ChannelCount} channel(s)");

                var engine = MigrationOptions.Default with
                {
                    LoggerFactory = loggerFactory,
                    DecisionStore = store,
                    FlightRecorder = recorder,
                    Checkpoint = MigrateCommand.PauseHook(parse.GetValue(pauseAt)),
                    CheckCompatibility = !parse.GetValue(noCompat),
                };
                engineRan = true;
                var target = device;
                var view = progress.Migration(engine.DowntimeLimit);
                var result = await view.RunAsync(p => NetMigration.ReceiveAsync(session, [target], engine,
                    ct => DeviceDigest.ComputeAsync(raw, ct), p, () => committed = true, cancellationToken)).ConfigureAwait(false);
                FlightRecords.RecordWire(recorder, "destination", session);
                var s = result.Statistics;
                if (asJson)
                {
                    CliJsonContext.Write(Console.Out, new ReceiveJson(result.Verdict != 2, s.MigrationId.ToString("D"), address.ToString(), listener.LocalEndPoint.ToString() ?? "", session.Peer.ToString() ?? "", session.ChannelCount,
                        MigrationJson.From(s), session.Reassembly.PeakQueuedBytes, session.Reassembly.CapacityBytes, result.Verdict switch { 1 => "match", 2 => "mismatch", _ => "skipped" },
                        NetCli.Hex(result.Status.Digest), result.Note.Length > 0 ? result.Note : null), CliJsonContext.Default.ReceiveJson);
                }
                progress.Line(string.Create(CultureInfo.InvariantCulture,
                    $"migration {s.MigrationId}: received {Units.FormatBytes(s.TotalBytes)} of device state in {s.TotalTime.TotalSeconds:0.000} s over {session.ChannelCount} channel(s); reorder buffer peak {Units.FormatBytes(session.Reassembly.PeakQueuedBytes)} of {Units.FormatBytes(session.Reassembly.CapacityBytes)}"));
                if (result.Status.Digest.Length > 0)
                    progress.Line($"destination sha256 {NetCli.Hex(result.Status.Digest)}");
                switch (result.Verdict)
                {
                    case 1:
                        progress.Line($"verified: destination matches source (sha256 {NetCli.Hex(result.Status.Digest)})");
                        return ExitCodes.Success;
                    case 2:
                        throw new CliException(ExitCodes.VerificationMismatch, Errno.EIO, "verify", $"the destination state differs from the source (source sha256 {NetCli.Hex(result.SourceDigest)})",
                            ["the destination is RUNNING with the migrated state"]);
                    default:
                        progress.Line(result.Note);
                        return ExitCodes.Success;
                }
            }
            catch (Exception e) when (e is VfioException or OperationCanceledException or IOException && e is not CliException { ExitCode: ExitCodes.Usage or ExitCodes.VerificationMismatch })
            {
                if (wire is not null)
                    FlightRecords.RecordWire(recorder, "destination", wire);
                string recordHint = FlightRecords.Hint(recorder, "receive", (e as MigrationException)?.MigrationId, dir);
                if (e is MigrationException { Held: true } held && device is not null)
                {
                    // This host is the destination: it decides, so its resolve is the one command that settles it.
                    CliErrors.Report("receive", e, Console.Error);
                    await MigrationRecords.ReportAsync("receive", [(MigrationSide.Destination, device)], true, held.MigrationId, dir,
                        [$"resolve it with: {MigrationRecords.ResolveCommand(held.MigrationId, dir)}", recordHint]).ConfigureAwait(false);
                    return ExitCodes.Held;
                }
                string hint;
                var id = e is MigrationException { MigrationId: var known } && known != Guid.Empty ? known : store.LastId;
                if (committed)
                {
                    hint = "the destination device is RUNNING with the migrated state (the migration completed); only the final exchange with the sender failed, so it is left running";
                }
                else if (device is null)
                {
                    hint = "no destination device was opened";
                }
                else
                {
                    // Before the commit the engine itself resets what it loaded (docs/commit-protocol.md); say where
                    // the device is now, never more than it shows.
                    try
                    {
                        var state = MigrationStateMachine.Name(await device.GetStateAsync(CancellationToken.None).ConfigureAwait(false));
                        hint = engineRan
                            ? $"destination {device.Name}: {state} after a reset: it holds nothing usable of this migration (a reset does not clear device memory; data written during the load may remain); the source keeps the state"
                            : $"destination {device.Name}: {state}; no migration reached it";
                    }
                    catch (VfioException r)
                    {
                        hint = $"cannot read the destination's state after the failure: {r.Message}";
                    }
                }
                // The sender may be gone (killed, its host down): say what settles its source, from this side's decision.
                var decided = id == Guid.Empty ? null : await MigrationRecords.TryReadDecisionAsync(store, id).ConfigureAwait(false);
                throw decided is null ? CliException.WithHints(e, hint, recordHint) : CliException.WithHints(e, hint, MigrationRecords.SourceHostHint(id, decided.Decision), recordHint);
            }
            finally
            {
                if (device is not null)
                    await device.DisposeAsync().ConfigureAwait(false);
            }
        });
        return command;
    }
}
