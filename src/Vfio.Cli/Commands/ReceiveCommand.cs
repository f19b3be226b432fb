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
        var listen = new Option<string>("--listen") { Description = "HOST:PORT to listen on (an IP; port 0 picks one and prints it)", Required = true };
        var into = new Option<string>("--into") { Description = "Destination device: sample:[options], unix:PATH or vfio:NAME", Required = true };
        var tlsCert = new Option<string?>("--tls-cert") { Description = "PEM server certificate (enables TLS; needs --tls-key)" };
        var tlsKey = new Option<string?>("--tls-key") { Description = "PEM private key of --tls-cert" };
        var clientCa = new Option<string?>("--client-ca") { Description = "PEM CA: require a sender certificate issued by it (mutual TLS)" };
        var token = NetCli.TokenFile();
        var insecure = NetCli.Insecure();
        var anonymous = new Option<bool>("--allow-anonymous-senders") { Description = "With TLS and neither --client-ca nor --token-file: accept any sender (refused otherwise)" };
        var revocation = NetCli.Revocation();
        var idle = NetCli.IdleTimeout();
        var handshake = NetCli.HandshakeTimeout();
        var acceptTimeout = new Option<string>("--accept-timeout") { Description = "Give up (ETIMEDOUT) when no authenticated sender has connected within this long; none waits until interrupted", DefaultValueFactory = _ => "none" };
        var maxQueued = new Option<string>("--max-queued") { Description = "Most out-of-order channel data held at once (≥ 4MiB)", DefaultValueFactory = _ => "64MiB" };
        var inject = new Option<string?>("--inject-fault") { Description = "Test aid: resume-stop makes the destination fail RESUMING→STOP", Hidden = true };
        var command = new Command("receive", "Receive a live migration over TCP (TLS or token) into a destination device.")
        {
            listen, into, tlsCert, tlsKey, clientCa, token, insecure, anonymous, revocation, idle, handshake, acceptTimeout, maxQueued, inject,
        };
        command.SetAction(async (parse, cancellationToken) =>
        {
            IVfioMigrationDevice? device = null;
            bool committed = false;
            try
            {
                var (host, port) = NetCli.ParseEndpoint(parse.GetValue(listen)!, "--listen", requireScheme: false);
                string? certPath = parse.GetValue(tlsCert), keyPath = parse.GetValue(tlsKey), caPath = parse.GetValue(clientCa), tokenPath = parse.GetValue(token);
                if (certPath is null != (keyPath is null))
                    return Usage("--tls-cert and --tls-key go together");
                if (caPath is not null && certPath is null)
                    return Usage("--client-ca needs TLS (--tls-cert and --tls-key)");
                var security = new NetSecurityOptions
                {
                    UseTls = certPath is not null,
                    Certificate = certPath is null ? null : NetCli.LoadCertificate(certPath, keyPath, "--tls-cert"),
                    TrustedCertificates = caPath is null ? null : NetCli.LoadCa(caPath, "--client-ca"),
                    Token = tokenPath is null ? null : NetToken.ReadFile(tokenPath),
                    Insecure = parse.GetValue(insecure),
                    AllowAnonymousSenders = parse.GetValue(anonymous),
                    Revocation = NetCli.ParseRevocation(parse.GetValue(revocation)!),
                    IdleTimeout = NetCli.Duration(parse.GetValue(idle)!, "idle-timeout"),
                    HandshakeTimeout = NetCli.Duration(parse.GetValue(handshake)!, "handshake-timeout"),
                };
                security.ValidateReceiver();
                string acceptText = parse.GetValue(acceptTimeout)!;
                var acceptOptions = new NetAcceptOptions
                {
                    AcceptTimeout = acceptText == "none" ? Timeout.InfiniteTimeSpan : NetCli.Duration(acceptText, "accept-timeout"),
                    OnDropped = line => Console.Error.WriteLine("vfio-mig receive: " + line),
                };
                var sessionOptions = new NetSessionOptions { MaxQueuedBytes = Math.Max(NetProtocol.MaxFramePayload, Units.ParseBytes(parse.GetValue(maxQueued)!, "max-queued")) };

                var address = DeviceAddress.Parse(parse.GetValue(into)!);
                device = await address.OpenAsync(cancellationToken).ConfigureAwait(false);
                var raw = device;
                if (parse.GetValue(inject) is { } fault)
                {
                    if (fault != "resume-stop")
                        return Usage("--inject-fault takes resume-stop");
                    device = new FaultInjectingDevice(device);
                }

                await using var listener = NetListener.Bind(host, port);
                string mode = NetCli.DescribeMode(security, receiver: true, "receive");
                Console.WriteLine($"listening on {listener.LocalEndPoint} ({mode}), destination {address}");
                await using var session = await listener.AcceptSessionAsync(security, sessionOptions, acceptOptions, cancellationToken).ConfigureAwait(false);
                Console.WriteLine($"sender {session.Peer} connected: {session.ChannelCount} channel(s)");

                var result = await NetMigration.ReceiveAsync(session, [device], MigrationOptions.Default,
                    ct => DeviceDigest.ComputeAsync(raw, ct), null, () => committed = true, cancellationToken).ConfigureAwait(false);
                var s = result.Statistics;
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"received {Units.FormatBytes(s.TotalBytes)} of device state in {s.TotalTime.TotalSeconds:0.000} s over {session.ChannelCount} channel(s); reorder buffer peak {Units.FormatBytes(session.Reassembly.PeakQueuedBytes)} of {Units.FormatBytes(session.Reassembly.CapacityBytes)}"));
                if (result.Status.Digest.Length > 0)
                    Console.WriteLine($"destination sha256 {NetCli.Hex(result.Status.Digest)}");
                switch (result.Verdict)
                {
                    case 1:
                        Console.WriteLine($"verified: destination matches source (sha256 {NetCli.Hex(result.Status.Digest)})");
                        return 0;
                    case 2:
                        Console.Error.WriteLine($"vfio-mig receive: error: EIO: the destination state differs from the source (source sha256 {NetCli.Hex(result.SourceDigest)})");
                        return 1;
                    default:
                        Console.WriteLine(result.Note);
                        return 0;
                }
            }
            catch (Exception e) when (e is VfioException or MigrationException or OperationCanceledException or IOException)
            {
                int code = NetCli.Fail(e, "receive");
                if (committed)
                {
                    Console.Error.WriteLine("vfio-mig receive: the destination device is RUNNING with the migrated state (the migration completed); only the final exchange with the sender failed, so it is left running");
                }
                else if (device is not null)
                {
                    try
                    {
                        await device.ResetAsync(CancellationToken.None).ConfigureAwait(false);
                        Console.Error.WriteLine("vfio-mig receive: the destination device was reset; nothing of the migration was applied");
                    }
                    catch (VfioException r)
                    {
                        Console.Error.WriteLine($"vfio-mig receive: error: reset of the destination failed too: {r.Message}");
                    }
                }
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

    private static int Usage(string message)
    {
        Console.Error.WriteLine($"vfio-mig receive: error: EINVAL: {message}");
        return 2;
    }
}
