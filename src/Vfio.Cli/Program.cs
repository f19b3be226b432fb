using System.CommandLine;
using Vfio.Cli.Commands;

// A signal mask survives exec, so a parent may pass on SIGINT/SIGTERM blocked; serve, send and receive stop on
// them. A precaution: the unanswered SIGTERM seen in tests came from a nohup'ed background run, not from a mask.
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
    TokenCommand.Create(),
    ResolveCommand.Create(),
    RecoverCommand.Create(),
    StateCommand.Create(),
    bench,
};
return await root.Parse(args).InvokeAsync().ConfigureAwait(false);
