using System.CommandLine;
using System.Globalization;
using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
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
        var size = new Option<string>("--size") { Description = "Device state size (BAR0), e.g. 64MiB", DefaultValueFactory = _ => "64MiB" };
        var dirtyRate = new Option<string>("--dirty-rate") { Description = "Bytes per second the device workload dirties while running, e.g. 16MiB/s", DefaultValueFactory = _ => "0" };
        var caps = new Option<string>("--caps") { Description = "Migration capabilities: 0x1, 0x3, 0x5 or 0x7 (0x5 = what libvfio-user offers)", DefaultValueFactory = _ => "0x5" };
        var seed = new Option<int>("--seed") { Description = "Seed of the initial content and workload", DefaultValueFactory = _ => 1 };
        var fault = new Option<string[]>("--fault")
        {
            Description = "Make the device violate the protocol on purpose (for testing `vfio-mig check`): " + string.Join(", ", SampleDeviceFaultNames.All) + "; repeat or join with +",
            AllowMultipleArgumentsPerToken = false,
        };
        var verbose = new Option<bool>("--verbose") { Description = "Log connections and failed commands to stderr" };
        var command = new Command("serve", "Serve a built-in device (the sample device, or --device libvfio-user-sample) as a vfio-user server (live migration capable).")
        {
            socket, device, size, dirtyRate, caps, seed, fault, verbose,
        };
        command.SetAction(async (parse, cancellationToken) =>
        {
            try
            {
                bool libVfioUser = parse.GetValue(device) == LibVfioUserSampleName;
                if (libVfioUser)
                {
                    // The profile is fixed by libvfio-user's sample (spec §12); sample-device options would be ignored.
                    foreach (Option option in new Option[] { size, dirtyRate, caps, seed, fault })
                    {
                        if (parse.GetResult(option) is { Implicit: false })
                            VfioException.Throw(Errno.EINVAL, "serve", $"{option.Name} does not apply to --device {LibVfioUserSampleName} (BAR0 time_t, BAR1 16 KiB, caps 0x5 are fixed)");
                    }
                }
                var options = new SampleDeviceOptions
                {
                    SizeBytes = Units.ParseBytes(parse.GetValue(size)!, "size"),
                    DirtyRateBytesPerSecond = Units.ParseRate(parse.GetValue(dirtyRate)!, "dirty-rate"),
                    Capabilities = Units.ParseCaps(parse.GetValue(caps)!),
                    Seed = parse.GetValue(seed),
                    Faults = (parse.GetValue(fault) ?? []).Aggregate(SampleDeviceFaults.None, (all, f) => all | Units.ParseFaults(f, "fault")),
                };
                using var loggerFactory = LoggerFactory.Create(b =>
                {
                    b.AddConsole(o => o.LogToStandardErrorThreshold = LogLevel.Trace);
                    b.AddFilter(_ => parse.GetValue(verbose));
                });
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
                await using var server = new VfioUserServer(parse.GetValue(socket)!, definition, new VfioUserServerOptions { LoggerFactory = loggerFactory });
                server.Start();
                string what = served is SampleDevice s
                    ? string.Create(CultureInfo.InvariantCulture, $"sample device ({Units.FormatBytes(s.SizeBytes)}, caps 0x{(ulong)s.Capabilities:x}{(options.Faults == SampleDeviceFaults.None ? "" : ", faults " + options.Faults)})")
                    : string.Create(CultureInfo.InvariantCulture, $"{LibVfioUserSampleName} device (BAR0 time_t, BAR1 {Units.FormatBytes(LibVfioUserSampleDevice.Bar1Size)}, caps 0x{(ulong)served.Capabilities:x})");
                Console.Out.WriteLine($"serving {what} on {server.Path}");
                Console.Out.Flush();
                await server.RunAsync(stop.Token).ConfigureAwait(false);
                Console.Out.WriteLine($"stopped after {server.ConnectionCount} client(s)");
                return 0;
            }
            catch (VfioException ex)
            {
                Console.Error.WriteLine(ex.Message);
                return 1;
            }
        });
        return command;
    }
}
