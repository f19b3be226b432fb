using System.CommandLine;
using Vfio.Engine;
using Vfio.Migration;

namespace Vfio.Cli.Commands;

/// <summary><c>vfio-mig state ADDRESS</c>: a device's migration state and every migration record that names it.</summary>
internal static class StateCommand
{
    public static Command Create()
    {
        var address = RecordCommands.Address();
        var stateDir = MigrationRecords.StateDirOption();
        var json = CliOptions.Json();
        var command = new Command("state", "Show a device's migration state and the migration records that name it.") { address, stateDir, json };
        command.SetAction(async (parse, cancellationToken) =>
        {
            await using var device = await RecordCommands.OpenAsync(parse.GetValue(address)!, cancellationToken).ConfigureAwait(false);
            var state = await device.GetStateAsync(cancellationToken).ConfigureAwait(false);
            string? dir = parse.GetValue(stateDir);
            var store = MigrationRecords.Open(dir);
            var rows = new List<(MigrationRecord Record, MigrationDecisionRecord? Decision)>();
            foreach (var r in (await store.ListRecordsAsync(cancellationToken).ConfigureAwait(false)).Where(r => r.Devices.Contains(device.Name)))
                rows.Add((r, await store.ReadDecisionAsync(r.Id, cancellationToken).ConfigureAwait(false)));
            if (parse.GetValue(json))
            {
                CliJsonContext.Write(Console.Out, new StateJson(device.Name, MigrationStateMachine.Name(state),
                    [.. rows.Select(x => new StateMigrationJson(x.Record.Id.ToString("D"), RecordCommands.Side(x.Record.Side), Status(x.Record), x.Record.IsUnresolved,
                        x.Decision is null ? null : MigrationResolver.Name(x.Decision.Decision), x.Record.Detail))]), CliJsonContext.Default.StateJson);
                return ExitCodes.Success;
            }
            Console.Out.WriteLine($"{device.Name}: {MigrationStateMachine.Name(state)}");
            foreach (var (r, d) in rows)
            {
                string decision = d is null ? "no decision recorded here" : $"decided {MigrationResolver.Name(d.Decision)} ({d.DecidedBy})";
                Console.Out.WriteLine($"  migration {r.Id} ({RecordCommands.Side(r.Side)}): {Status(r)}, {decision}; {r.Detail}");
                if (r.IsUnresolved)
                    Console.Out.WriteLine($"    resolve: {MigrationRecords.ResolveCommand(r.Id, dir)}");
            }
            if (rows.Count == 0 && state != VfioMigrationState.Running)
                Console.Out.WriteLine($"  no migration record here names it; 'vfio-mig recover {device.Name} --force' resumes it if it is known to run nowhere else");
            return ExitCodes.Success;
        });
        return command;
    }

    private static string Status(MigrationRecord record) => record.Status.ToString().ToLowerInvariant();
}
