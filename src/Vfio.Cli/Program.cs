using System.CommandLine;
using Vfio.Cli.Commands;

var root = new RootCommand("vfio-mig: Linux VFIO device migration protocol v2 — devices, live migration, conformance.")
{
    CheckCommand.Create(),
    PathCommand.Create(),
};
return await root.Parse(args).InvokeAsync().ConfigureAwait(false);
