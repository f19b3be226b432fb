using System.CommandLine;
using Vfio.Cli.Commands;

var root = new RootCommand("vfio-mig: Linux VFIO device migration protocol v2 — devices, live migration, conformance.")
{
    PathCommand.Create(),
    ServeCommand.Create(),
    InfoCommand.Create(),
    MigrateCommand.Create(),
    DemoCommand.Create(),
    SendCommand.Create(),
    ReceiveCommand.Create(),
    BenchCommand.Create(),
};
return await root.Parse(args).InvokeAsync().ConfigureAwait(false);
