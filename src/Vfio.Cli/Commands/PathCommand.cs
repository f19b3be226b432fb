using System.CommandLine;
using Vfio.Migration;

namespace Vfio.Cli.Commands;

/// <summary><c>vfio-mig path</c>: the kernel's arc path for a state request, or the whole table as CSV.</summary>
internal static class PathCommand
{
    private static readonly string StateNames = string.Join(", ", Enum.GetValues<VfioMigrationState>().Select(MigrationStateMachine.Name));

    public static Command Create()
    {
        var from = State("from", "Current state (e.g. RUNNING)");
        var to = State("to", "Requested state (e.g. STOP_COPY)");
        var caps = new Option<Caps[]>("--caps")
        {
            Description = "Capabilities: 0x1, 0x3, 0x5 or 0x7; with --all a comma-separated list",
            HelpName = "CAPS",
            DefaultValueFactory = _ => [new Caps(VfioMigrationFlags.StopCopy | VfioMigrationFlags.P2P | VfioMigrationFlags.PreCopy)],
            CustomParser = r =>
            {
                try
                {
                    return [.. r.Tokens[^1].Value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(t => new Caps(Units.ParseCaps(t)))];
                }
                catch (VfioException e)
                {
                    r.AddError(e.Message);
                    return [];
                }
            },
        };
        var all = new Option<bool>("--all") { Description = "Print every (caps, from, to) request" };
        var format = new Option<string>("--format") { Description = "Output format with --all: csv or text", DefaultValueFactory = _ => "csv" };
        format.AcceptOnlyFromAmong("csv", "text");
        var json = CliOptions.Json();

        var command = new Command("path", "Print the arc path the kernel walks for a device_state request (the encoding of tests/fixtures/fsm-paths.csv).")
        {
            from, to, caps, all, format, json,
        };
        command.WithHelp(addresses: false,
            "vfio-mig path RUNNING STOP_COPY --caps 0x7       # RUNNING > RUNNING_P2P > STOP > STOP_COPY",
            "vfio-mig path STOP_COPY PRE_COPY                 # EINVAL: the kernel rejects this request (exit 1)",
            "vfio-mig path --all --caps 0x1,0x3,0x5,0x7       # the whole table, as tests/fixtures/fsm-paths.csv");
        command.Validators.Add(r =>
        {
            bool listAll = r.GetValue(all);
            if (!listAll && (r.GetResult(from) is null || r.GetResult(to) is null))
                r.AddError("give FROM and TO states, or --all");
            else if (!listAll && r.ReferenceOrNull(caps) is { Length: > 1 })
                r.AddError("--caps takes one value unless --all is given");
        });
        command.SetAction(parse =>
        {
            var capsList = parse.GetValue(caps)!.Select(c => c.Flags).ToList();
            bool listAll = parse.GetValue(all);
            var requests = listAll
                ? [.. from c in capsList
                      from f in Enum.GetValues<VfioMigrationState>()
                      from t in Enum.GetValues<VfioMigrationState>()
                      select (Caps: c, From: f, To: t)]
                : new List<(VfioMigrationFlags Caps, VfioMigrationState From, VfioMigrationState To)> { (capsList[0], parse.GetValue(from), parse.GetValue(to)) };
            var rows = requests.Select(q => (q.Caps, q.From, q.To, Path: MigrationStateMachine.GetPath(q.From, q.To, q.Caps))).ToList();
            if (parse.GetValue(json))
            {
                CliJsonContext.Write(Console.Out, new PathJson([.. rows.Select(r => new PathRowJson(MigrationStateMachine.FormatCaps(r.Caps), MigrationStateMachine.Name(r.From), MigrationStateMachine.Name(r.To), r.Path.ToString(), r.Path.Succeeds))]),
                    CliJsonContext.Default.PathJson);
            }
            else if (!listAll)
            {
                Console.Out.WriteLine(Pretty(rows[0].Path));
            }
            else
            {
                bool csv = parse.GetValue(format) == "csv";
                Console.Out.Write(csv ? "caps,from,to,path\n" : "");
                foreach (var (c, f, t, path) in rows)
                {
                    string caps0 = MigrationStateMachine.FormatCaps(c), fn = MigrationStateMachine.Name(f), tn = MigrationStateMachine.Name(t);
                    Console.Out.Write(csv ? $"{caps0},{fn},{tn},{path}\n" : $"{caps0}  {fn,-13} -> {tn,-13} {Pretty(path)}\n");
                }
            }
            return listAll || rows[0].Path.Succeeds ? ExitCodes.Success : ExitCodes.Failed;
        });
        return command;
    }

    private static Argument<VfioMigrationState> State(string name, string description) => new(name)
    {
        Description = description + "; one of " + StateNames,
        HelpName = name.ToUpperInvariant(),
        Arity = ArgumentArity.ZeroOrOne,
        CustomParser = r =>
        {
            string text = r.Tokens[0].Value;
            if (MigrationStateMachine.TryParse(text, out var state))
                return state;
            r.AddError($"EINVAL: '{text}' is not a state ({StateNames})");
            return default;
        },
    };

    private static string Pretty(MigrationPath path) => path.Kind switch
    {
        MigrationPathKind.Arcs or MigrationPathKind.Same => string.Join(" > ", path.States.Select(MigrationStateMachine.Name)),
        MigrationPathKind.Rejected => "EINVAL: the kernel rejects this request; the state is unchanged",
        MigrationPathKind.RejectedInError => "EINVAL: the device is in ERROR (kernel WARN); only a reset leaves it",
        _ => "n/a: the device cannot be in this state with these caps",
    };
}
