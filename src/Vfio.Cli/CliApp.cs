using System.CommandLine;
using Vfio.Cli.Commands;

namespace Vfio.Cli;

/// <summary>
/// The command tree and the one path every invocation takes: parse; a parse error prints one line and a
/// pointer to --help (exit 2); otherwise the command runs, and anything it throws is printed by
/// <see cref="CliErrors"/> as one line with its exit code. A command only returns an <see cref="ExitCodes"/>
/// value or throws (docs/cli/conventions.md, "Adding a command").
/// </summary>
internal static class CliApp
{
    public static RootCommand Build()
    {
        var bench = BenchCommand.Create();
        bench.Subcommands.Add(TcpBenchCommand.Create());
        bench.Subcommands.Add(MigrateBenchCommand.Create());
        var root = new RootCommand("vfio-mig: Linux VFIO device migration protocol v2 — devices, live migration, conformance.")
        {
            CheckCommand.Create(),
            PathCommand.Create(),
            DemoCommand.Create(),
            ServeCommand.Create(),
            InfoCommand.Create(),
            MigrateCommand.Create(),
            CompatCommand.Create(),
            SendCommand.Create(),
            ReceiveCommand.Create(),
            TokenCommand.Create(),
            ResolveCommand.Create().WithHelp(addresses: false,
                "vfio-mig resolve 6f1c…-…                        # on the destination host: prints committed or aborted",
                "vfio-mig resolve 6f1c…-… --decision committed   # on the source host, with the destination's answer"),
            RecoverCommand.Create().WithHelp(addresses: true,
                "vfio-mig recover unix:./a.sock                  # resume a source whose migration is known aborted",
                "vfio-mig recover vfio:A --json"),
            ReportCommand.Create(),
            StateCommand.Create().WithHelp(addresses: true,
                "vfio-mig state unix:./a.sock                    # device_state and the records that name the device",
                "vfio-mig state vfio:A --json"),
            bench,
        };
        root.WithHelp(addresses: true,
            "vfio-mig demo --size 256MiB --dirty-rate 16MiB/s      # live migration in process, verified by SHA-256",
            "vfio-mig serve --socket ./a.sock &                    # a vfio-user server",
            "vfio-mig migrate --from unix:./a.sock --to sample:     # migrate it into an in-process device",
            "vfio-mig check sample:size=4MiB                        # conformance report",
            "vfio-mig COMMAND --help                                # each command's options and examples");
        CliHelp.Install(root);
        return root;
    }

    /// <summary>Runs the command line; returns the process exit code.</summary>
    public static async Task<int> RunAsync(string[] args, TextWriter? stdout = null, TextWriter? stderr = null, CancellationToken cancellationToken = default)
    {
        stdout ??= Console.Out;
        stderr ??= Console.Error;
        var root = Build();
        if (args.Length == 0)
        {
            await root.Parse(["--help"]).InvokeAsync(new InvocationConfiguration { Output = stdout, Error = stderr }, cancellationToken).ConfigureAwait(false);
            return ExitCodes.Usage;
        }
        ParseResult parse;
        try
        {
            parse = root.Parse(args);
        }
#pragma warning disable CA1031 // a validator that throws is still a usage error, never a stack trace
        catch (Exception e)
#pragma warning restore CA1031
        {
            return CliErrors.ReportUsage("", CliErrors.Describe(e).Line, stderr);
        }
        string name = CommandName(parse);
        if (parse.Errors.Count > 0 && !CliHelp.IsHelp(parse.Action))
        {
            // "Required command was not provided" says less than the unknown word that caused it.
            var error = parse.Errors.FirstOrDefault(e => e.Message.StartsWith("Unrecognized", StringComparison.Ordinal)) ?? parse.Errors[0];
            return CliErrors.ReportUsage(name, error.Message, stderr);
        }
        try
        {
            var configuration = new InvocationConfiguration { EnableDefaultExceptionHandler = false, Output = stdout, Error = stderr };
            return await parse.InvokeAsync(configuration, cancellationToken).ConfigureAwait(false);
        }
#pragma warning disable CA1031 // the one place that catches everything: no input may end in a stack trace
        catch (Exception e)
#pragma warning restore CA1031
        {
            await stdout.FlushAsync(CancellationToken.None).ConfigureAwait(false);
            int code = CliErrors.Report(name, e, stderr);
            if (WantsJson(parse) && e is not CliException { DocumentPrinted: true })
            {
                var (errno, line) = CliErrors.Describe(e);
                CliJsonContext.Write(stdout, new ErrorJson(false, name, VfioException.NameOf(errno), line, code), CliJsonContext.Default.ErrorJson);
            }
            return code;
        }
    }

    // Under --json a failure is a JSON document on stdout too, so a script reading stdout always gets one.
    private static bool WantsJson(ParseResult parse)
        => parse.CommandResult.Command.Options.FirstOrDefault(o => o.Name == "--json") is Option<bool> json && parse.GetValue(json);

    /// <summary>The command's path below the root, e.g. <c>bench tcp</c>.</summary>
    private static string CommandName(ParseResult parse)
    {
        var names = new List<string>();
        for (var result = parse.CommandResult; result.Parent is System.CommandLine.Parsing.CommandResult parent; result = parent)
            names.Insert(0, result.Command.Name);
        return names.Count == 0 ? "" : string.Join(' ', names);
    }
}
