using System.CommandLine;
using System.Globalization;
using System.Runtime.InteropServices;
using Vfio.Sample;
using Vfio.User.Server;

namespace Vfio.Cli.Commands;

/// <summary>
/// <c>vfio-mig serve</c>: serves a built-in device over vfio-user on a UNIX socket until SIGINT/SIGTERM: the sample
/// device (default) or the libvfio-user sample profile (<c>--device libvfio-user-sample</c>).
/// </summary>
internal static class ServeCommand
{
    private static readonly TimeSpan ShutdownGrace = TimeSpan.FromSeconds(10);

    private const string SampleDeviceName = "sample";
    private const string LibVfioUserSampleName = "libvfio-user-sample";

    public static Command Create()
    {
        var device = new Option<string>("--device")
        {
            Description = $"Device to serve: {SampleDeviceName} (the sample device) or {LibVfioUserSampleName} (the device of libvfio-user's samples/server, for its samples/client)",
            DefaultValueFactory = _ => SampleDeviceName,
        };
        device.AcceptOnlyFromAmong(SampleDeviceName, LibVfioUserSampleName);
        var socket = new Option<string>("--socket") { Description = "UNIX socket path to listen on (mode 0600; a stale socket is replaced)", Required = true };
        var size = CliOptions.DeviceSize("64MiB", "Device state size (BAR0; a multiple of 4KiB; binary suffixes: 64M = 64MiB)");
        var dirtyRate = CliOptions.DirtyRate("0");
        var caps = CliOptions.Caps("0x5", "Migration capabilities: 0x1, 0x3, 0x5 or 0x7 (0x5 = what libvfio-user offers)");
        var seed = CliOptions.Int("--seed", "Seed of the initial content and workload", 1, int.MinValue, int.MaxValue);
        var fault = new Option<SampleDeviceFaults>("--fault")
        {
            Description = "Make the device violate the protocol on purpose (for testing `vfio-mig check`): " + string.Join(", ", SampleDeviceFaultNames.All) + "; repeat or join with +",
            AllowMultipleArgumentsPerToken = false,
            Arity = ArgumentArity.ZeroOrMore,
            CustomParser = r =>
            {
                try
                {
                    return r.Tokens.Aggregate(SampleDeviceFaults.None, (all, t) => all | Units.ParseFaults(t.Value, "fault"));
                }
                catch (VfioException e)
                {
                    r.AddError(e.Message);
                    return SampleDeviceFaults.None;
                }
            },
        };
        var json = CliOptions.Json();
        var verbose = CliLogging.Verbose("connections and failed commands");
        var command = new Command("serve", "Serve a built-in device (the sample device, or --device libvfio-user-sample) as a vfio-user server (live migration capable).")
        {
            socket, device, size, dirtyRate, caps, seed, fault, verbose, json,
        };
        command.WithHelp(addresses: false,
            "vfio-mig serve --socket ./a.sock --size 64MiB --dirty-rate 8MiB/s &",
            "vfio-mig serve --socket ./b.sock --caps 0x7 --fault reuse-stream &   # a broken device for vfio-mig check",
            "vfio-mig serve --socket ./lvu.sock --device libvfio-user-sample &     # for libvfio-user's samples/client");
        command.Validators.Add(r =>
        {
            // The profile is fixed by libvfio-user's sample (spec §12); sample-device options would be ignored.
            if (r.ReferenceOrNull(device) != LibVfioUserSampleName)
                return;
            foreach (Option option in new Option[] { size, dirtyRate, caps, seed, fault })
            {
                if (r.GetResult(option) is { Implicit: false })
                    r.AddError($"{option.Name} does not apply to --device {LibVfioUserSampleName} (BAR0 time_t, BAR1 16 KiB, caps 0x5 are fixed)");
            }
        });
        command.SetAction(async (parse, cancellationToken) =>
        {
            bool libVfioUser = parse.GetValue(device) == LibVfioUserSampleName;
            var options = new SampleDeviceOptions
            {
                SizeBytes = parse.GetValue(size).Bytes,
                DirtyRateBytesPerSecond = parse.GetValue(dirtyRate).BytesPerSecond,
                Capabilities = parse.GetValue(caps).Flags,
                Seed = parse.GetValue(seed),
                Faults = parse.GetValue(fault),
            };
            string socketPath = parse.GetValue(socket)!;
            CheckListenPath(socketPath);
            using var loggerFactory = CliLogging.Create(parse.GetValue(verbose));
            using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            void OnSignal(PosixSignalContext context)
            {
                context.Cancel = true;
                Console.Error.WriteLine($"vfio-mig serve: {context.Signal}: stopping");
                // Cancel off the signal thread (cancellation callbacks and the awaits they resume run inline), and
                // bound the shutdown: a client that never lets go must not keep the process alive.
                _ = Task.Run(() => stop.Cancel(), CancellationToken.None);
                _ = Task.Delay(ShutdownGrace, CancellationToken.None).ContinueWith(_ =>
                {
                    Console.Error.WriteLine($"vfio-mig serve: shutdown did not finish within {ShutdownGrace.TotalSeconds:0} s; exiting");
                    Environment.Exit(1);
                }, TaskScheduler.Default);
            }
            using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal);
            using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal);
            using var served = libVfioUser ? (Vfio.Device.MigrationDevice)new LibVfioUserSampleDevice() : new SampleDevice(options);
            var definition = served is SampleDevice sample ? VfioUserDeviceDefinition.ForSample(sample) : VfioUserDeviceDefinition.ForLibVfioUserSample((LibVfioUserSampleDevice)served);
            await using var server = new VfioUserServer(socketPath, definition, new VfioUserServerOptions { LoggerFactory = loggerFactory });
            server.Start();
            string what = served is SampleDevice s
                ? string.Create(CultureInfo.InvariantCulture, $"sample device ({Units.FormatBytes(s.SizeBytes)}, caps 0x{(ulong)s.Capabilities:x}{(options.Faults == SampleDeviceFaults.None ? "" : ", faults " + options.Faults)})")
                : string.Create(CultureInfo.InvariantCulture, $"{LibVfioUserSampleName} device (BAR0 time_t, BAR1 {Units.FormatBytes(LibVfioUserSampleDevice.Bar1Size)}, caps 0x{(ulong)served.Capabilities:x})");
            bool asJson = parse.GetValue(json);
            // Under --json the ready line goes to stderr; the one document (with the client count) comes at the end.
            (asJson ? Console.Error : Console.Out).WriteLine($"serving {what} on {server.Path}");
            (asJson ? Console.Error : Console.Out).Flush();
            await server.RunAsync(stop.Token).ConfigureAwait(false);
            if (asJson)
            {
                CliJsonContext.Write(Console.Out, new ServeJson(true, server.Path, libVfioUser ? LibVfioUserSampleName : SampleDeviceName,
                    served is SampleDevice sd ? sd.SizeBytes : LibVfioUserSampleDevice.Bar1Size, "0x" + ((ulong)served.Capabilities).ToString("x", CultureInfo.InvariantCulture), server.ConnectionCount),
                    CliJsonContext.Default.ServeJson);
            }
            else
            {
                Console.Out.WriteLine($"stopped after {server.ConnectionCount} client(s)");
            }
            return ExitCodes.Success;
        });
        return command;
    }

    // The server's own bind error for a missing directory is EADDRINUSE-like; name the directory instead.
    private static void CheckListenPath(string path)
    {
        string? directory = Path.GetDirectoryName(Path.GetFullPath(path));
        if (directory is not null && !Directory.Exists(directory))
            throw new CliException(ExitCodes.Usage, Errno.ENOENT, "--socket", $"the directory {directory} does not exist", ["create it, or give a path in an existing directory"]);
    }
}
