using System.CommandLine;
using System.Text;
using System.Text.Json;
using Vfio.Engine;
using Vfio.Migration;

namespace Vfio.Cli.Commands;

/// <summary><c>vfio-mig state ADDRESS</c>: a device's migration state and every migration record that names it.</summary>
internal static class StateCommand
{
    public static Command Create()
    {
        var address = new Argument<string>("ADDRESS") { Description = "The device: unix:PATH or vfio:NAME" };
        var stateDir = MigrationRecords.StateDirOption();
        var json = new Option<bool>("--json") { Description = "Print one JSON object" };
        var command = new Command("state", "Show a device's migration state and the migration records that name it.") { address, stateDir, json };
        command.SetAction(async (parse, cancellationToken) =>
        {
            IVfioMigrationDevice? device = null;
            try
            {
                var where = DeviceAddress.Parse(parse.GetValue(address)!);
                device = await where.OpenAsync(cancellationToken).ConfigureAwait(false);
                var state = await device.GetStateAsync(cancellationToken).ConfigureAwait(false);
                string? dir = parse.GetValue(stateDir);
                var store = MigrationRecords.Open(dir);
                var records = (await store.ListRecordsAsync(cancellationToken).ConfigureAwait(false)).Where(r => r.Devices.Contains(device.Name)).ToList();
                var rows = new List<(MigrationRecord Record, MigrationDecisionRecord? Decision)>();
                foreach (var r in records)
                    rows.Add((r, await store.ReadDecisionAsync(r.Id, cancellationToken).ConfigureAwait(false)));
                if (parse.GetValue(json))
                {
                    Console.Out.WriteLine(Json(device.Name, state, rows));
                    return ExitCodes.Success;
                }
                Console.Out.WriteLine($"{device.Name}: {MigrationStateMachine.Name(state)}");
                foreach (var (r, d) in rows)
                {
                    string decision = d is null ? "no decision recorded here" : $"decided {MigrationResolver.Name(d.Decision)} ({d.DecidedBy})";
                    Console.Out.WriteLine($"  migration {r.Id} ({(r.Side == MigrationSide.Source ? "source" : "destination")}): {r.Status.ToString().ToLowerInvariant()}, {decision}; {r.Detail}");
                    if (r.IsUnresolved)
                        Console.Out.WriteLine($"    resolve: {MigrationRecords.ResolveCommand(r.Id, dir)}");
                }
                if (rows.Count == 0 && state != VfioMigrationState.Running)
                    Console.Out.WriteLine($"  no migration record here names it; 'vfio-mig recover {device.Name} --force' resumes it if it is known to run nowhere else");
                return ExitCodes.Success;
            }
            catch (VfioException e)
            {
                Console.Error.WriteLine($"vfio-mig state: error: {e.Message}");
                return e.Errno == Errno.EINVAL ? ExitCodes.Usage : ExitCodes.Failed;
            }
            finally
            {
                if (device is not null)
                    await device.DisposeAsync().ConfigureAwait(false);
            }
        });
        return command;
    }

    private static string Json(string name, VfioMigrationState state, List<(MigrationRecord Record, MigrationDecisionRecord? Decision)> rows)
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms))
        {
            w.WriteStartObject();
            w.WriteString("address", name);
            w.WriteString("state", MigrationStateMachine.Name(state));
            w.WriteStartArray("migrations");
            foreach (var (r, d) in rows)
            {
                w.WriteStartObject();
                w.WriteString("migration_id", r.Id.ToString("D"));
                w.WriteString("side", r.Side == MigrationSide.Source ? "source" : "destination");
                w.WriteString("status", r.Status.ToString().ToLowerInvariant());
                w.WriteBoolean("unresolved", r.IsUnresolved);
                if (d is null)
                    w.WriteNull("decision");
                else
                    w.WriteString("decision", MigrationResolver.Name(d.Decision));
                w.WriteString("detail", r.Detail);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(ms.ToArray());
    }
}
