using System.CommandLine;
using Vfio.Cli.Commands;

// Whoever started us may have passed on a mask that blocks SIGINT/SIGTERM; serve, send and receive stop on them.
_ = Vfio.Interop.Interop.UnblockTerminationSignals();

var bench = BenchCommand.Create();
bench.Subcommands.Add(TcpBenchCommand.Create());
var root = new RootCommand("vfio-mig: Linux VFIO device migration protocol v2 — devices, live migration, conformance.")
{
    CheckCommand.Create(),
    PathCommand.Create(),
    DemoCommand.Create(),
    ServeCommand.Create(),
    InfoCommand.Create(),
    MigrateCommand.Create(),
    SendCommand.Create(),
    ReceiveCommand.Create(),
    bench,
};
return await root.Parse(args).InvokeAsync().ConfigureAwait(false);
