using System.CommandLine;
using Vfio.Migration;

namespace Vfio.Cli.Commands;

/// <summary><c>vfio-mig path</c>: the kernel's arc path for a state request, or the whole table as CSV.</summary>
internal static class PathCommand
{
    public static Command Create()
    {
        var from = new Argument<string?>("from") { Description = "Current state (e.g. RUNNING)", Arity = ArgumentArity.ZeroOrOne };
        var to = new Argument<string?>("to") { Description = "Requested state (e.g. STOP_COPY)", Arity = ArgumentArity.ZeroOrOne };
        var caps = new Option<string>("--caps") { Description = "Capability flags; with --all a comma-separated list", DefaultValueFactory = _ => "0x7" };
        var all = new Option<bool>("--all") { Description = "Print every (caps, from, to) request" };
        var format = new Option<string>("--format") { Description = "Output format with --all: csv or text", DefaultValueFactory = _ => "csv" };
        format.AcceptOnlyFromAmong("csv", "text");

        var command = new Command("path", "Print the arc path the kernel walks for a device_state request (fsm-paths.csv encoding).")
        {
            from, to, caps, all, format,
        };
        command.SetAction(parse =>
        {
            var capsList = new List<VfioMigrationFlags>();
            foreach (var text in parse.GetValue(caps)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            {
                if (!MigrationStateMachine.TryParseCaps(text, out var c))
                    return Fail($"EINVAL: --caps: '{text}' is not a number (write 0x7 or 7)");
                capsList.Add(c);
            }

            if (parse.GetValue(all))
            {
                bool csv = parse.GetValue(format) == "csv";
                Console.Out.Write(csv ? "caps,from,to,path\n" : "");
                foreach (var c in capsList)
                {
                    for (uint f = 0; f < MigrationStateMachine.StateCount; f++)
                    {
                        for (uint t = 0; t < MigrationStateMachine.StateCount; t++)
                        {
                            var path = MigrationStateMachine.GetPath((VfioMigrationState)f, (VfioMigrationState)t, c);
                            string caps0 = MigrationStateMachine.FormatCaps(c);
                            string fn = MigrationStateMachine.Name((VfioMigrationState)f), tn = MigrationStateMachine.Name((VfioMigrationState)t);
                            Console.Out.Write(csv ? $"{caps0},{fn},{tn},{path}\n" : $"{caps0}  {fn,-13} -> {tn,-13} {Pretty(path)}\n");
                        }
                    }
                }
                return 0;
            }

            string? fromText = parse.GetValue(from), toText = parse.GetValue(to);
            if (fromText is null || toText is null)
                return Fail("EINVAL: give FROM and TO states, or --all");
            if (capsList.Count != 1)
                return Fail("EINVAL: --caps takes one value unless --all is given");
            if (!MigrationStateMachine.TryParse(fromText, out var fs))
                return Fail($"EINVAL: '{fromText}' is not a state (ERROR, STOP, RUNNING, STOP_COPY, RESUMING, RUNNING_P2P, PRE_COPY, PRE_COPY_P2P)");
            if (!MigrationStateMachine.TryParse(toText, out var ts))
                return Fail($"EINVAL: '{toText}' is not a state (ERROR, STOP, RUNNING, STOP_COPY, RESUMING, RUNNING_P2P, PRE_COPY, PRE_COPY_P2P)");
            var result = MigrationStateMachine.GetPath(fs, ts, capsList[0]);
            Console.WriteLine(Pretty(result));
            return result.Succeeds ? 0 : 1;
        });
        return command;
    }

    private static string Pretty(MigrationPath path) => path.Kind switch
    {
        MigrationPathKind.Arcs or MigrationPathKind.Same => string.Join(" > ", path.States.Select(MigrationStateMachine.Name)),
        MigrationPathKind.Rejected => "EINVAL: the kernel rejects this request; the state is unchanged",
        MigrationPathKind.RejectedInError => "EINVAL: the device is in ERROR (kernel WARN); only a reset leaves it",
        _ => "n/a: the device cannot be in this state with these caps",
    };

    private static int Fail(string message)
    {
        Console.Error.WriteLine(message);
        return 2;
    }
}
