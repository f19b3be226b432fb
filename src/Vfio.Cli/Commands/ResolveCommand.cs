using System.CommandLine;
using System.Text;
using System.Text.Json;
using Vfio.Engine;
using Vfio.Migration;

namespace Vfio.Cli.Commands;

/// <summary>
/// <c>vfio-mig resolve ID</c>: finishes a held or interrupted migration from the records in the state directory
/// (docs/commit-protocol.md, "Resolving"): exactly one copy runs afterwards.
/// </summary>
internal static class ResolveCommand
{
    public static Command Create()
    {
        var id = new Argument<string>("ID") { Description = "The migration id (printed when the migration started)" };
        var decision = new Option<string?>("--decision") { Description = "committed or aborted, as printed by resolve on the destination host (on the source host only)" };
        var stateDir = MigrationRecords.StateDirOption();
        var json = new Option<bool>("--json") { Description = "Print one JSON object" };
        var command = new Command("resolve", "Finish a held migration: start the destination or resume the source, exactly one.") { id, decision, stateDir, json };
        command.SetAction(async (parse, cancellationToken) =>
        {
            if (!Guid.TryParse(parse.GetValue(id), out var guid))
                return Usage($"'{parse.GetValue(id)}' is not a migration id");
            MigrationDecision? given = parse.GetValue(decision) switch
            {
                null => null,
                "committed" => MigrationDecision.Committed,
                "aborted" => MigrationDecision.Aborted,
                var other => (MigrationDecision)0,
            };
            if (given == 0)
                return Usage("--decision takes committed or aborted");
            string? dir = parse.GetValue(stateDir);
            var store = MigrationRecords.Open(dir);
            var opened = new List<IVfioMigrationDevice>();
            try
            {
                var sourceRecord = await store.ReadRecordAsync(guid, MigrationSide.Source, cancellationToken).ConfigureAwait(false);
                var destinationRecord = await store.ReadRecordAsync(guid, MigrationSide.Destination, cancellationToken).ConfigureAwait(false);
                if (sourceRecord is null && destinationRecord is null)
                    return Fail(Errno.ENOENT, $"no record of migration {guid} in {store.Directory}", "run it on the host (and with the --state-dir) of the migration");
                if (given is not null && destinationRecord is not null)
                    return Usage("--decision is for the source host; this host has the destination's record, and the destination decides");
                var sources = sourceRecord is null ? null : await OpenAllAsync(sourceRecord, opened, cancellationToken).ConfigureAwait(false);
                var destinations = destinationRecord is null ? null : await OpenAllAsync(destinationRecord, opened, cancellationToken).ConfigureAwait(false);
                MigrationResolution result;
                try
                {
                    result = await MigrationResolver.ResolveAsync(guid, store, sources, destinations, given, cancellationToken).ConfigureAwait(false);
                }
                catch (VfioException e) when (e.Errno == Errno.ENOENT)
                {
                    Console.Error.WriteLine($"vfio-mig resolve: error: ENOENT: {e.Detail}");
                    Console.Error.WriteLine("  hint: the source devices stay held (stopped, state intact) until then");
                    return ExitCodes.Held;
                }
                var decided = result.Decision!.Value;
                FlightRecords.AppendResolution(store.Directory, guid, MigrationResolver.Name(decided), result.Devices.Select(d => (d.Side == MigrationSide.Source ? "source" : "destination", d.Name, d.Action)));
                string? otherHost = destinationRecord is not null && sourceRecord is null
                    ? $"vfio-mig resolve {guid} --decision {MigrationResolver.Name(decided)}"
                    : null;
                if (parse.GetValue(json))
                {
                    Console.Out.WriteLine(Json(result, otherHost));
                }
                else
                {
                    Console.Out.WriteLine($"migration {guid}: {MigrationResolver.Name(decided)}{(result.DecidedNow ? " (decided now: no commit was recorded)" : "")}");
                    foreach (var d in result.Devices)
                        Console.Out.WriteLine($"  {(d.Side == MigrationSide.Source ? "source" : "destination")} {d.Name}: {d.Action}");
                    if (otherHost is not null)
                        Console.Out.WriteLine($"on the source host, run: {otherHost}");
                }
                if (!result.Ok)
                {
                    Console.Error.WriteLine("vfio-mig resolve: error: EIO: a device could not be brought where the decision says (see above); run resolve again once it answers");
                    return ExitCodes.Failed;
                }
                return ExitCodes.Success;
            }
            catch (VfioException e)
            {
                Console.Error.WriteLine($"vfio-mig resolve: error: {e.Message}");
                return ExitCodes.Failed;
            }
            finally
            {
                foreach (var d in opened)
                    await d.DisposeAsync().ConfigureAwait(false);
            }
        });
        return command;
    }

    /// <summary>Opens the devices a record names (their addresses); in-process sample devices ended with their process.</summary>
    internal static async Task<List<IVfioMigrationDevice>> OpenAllAsync(MigrationRecord record, List<IVfioMigrationDevice> opened, CancellationToken cancellationToken)
    {
        var list = new List<IVfioMigrationDevice>();
        foreach (var name in record.Devices)
        {
            var address = DeviceAddress.Parse(name);
            if (address.Scheme == "sample")
                throw new VfioException(Errno.EOPNOTSUPP, "resolve", $"{name} was an in-process sample device; it ended with the process that migrated it");
            var device = await address.OpenAsync(cancellationToken).ConfigureAwait(false);
            opened.Add(device);
            list.Add(device);
        }
        return list;
    }

    internal static string Json(MigrationResolution result, string? otherHost)
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms))
        {
            w.WriteStartObject();
            w.WriteString("migration_id", result.Id.ToString("D"));
            if (result.Decision is { } d)
                w.WriteString("decision", MigrationResolver.Name(d));
            else
                w.WriteNull("decision");
            w.WriteBoolean("decided_now", result.DecidedNow);
            w.WriteBoolean("ok", result.Ok);
            w.WriteStartArray("devices");
            foreach (var dev in result.Devices)
            {
                w.WriteStartObject();
                w.WriteString("side", dev.Side == MigrationSide.Source ? "source" : "destination");
                w.WriteString("address", dev.Name);
                if (dev.State is { } s)
                    w.WriteString("state", MigrationStateMachine.Name(s));
                else
                    w.WriteNull("state");
                w.WriteString("action", dev.Action);
                w.WriteBoolean("ok", dev.Ok);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            if (otherHost is not null)
                w.WriteString("source_host_command", otherHost);
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(ms.ToArray());
    }

    private static int Usage(string message)
    {
        Console.Error.WriteLine($"vfio-mig resolve: error: EINVAL: {message}");
        return ExitCodes.Usage;
    }

    private static int Fail(Errno errno, string message, string hint)
    {
        Console.Error.WriteLine($"vfio-mig resolve: error: {VfioException.NameOf(errno)}: {message}");
        Console.Error.WriteLine($"  hint: {hint}");
        return ExitCodes.Failed;
    }
}
