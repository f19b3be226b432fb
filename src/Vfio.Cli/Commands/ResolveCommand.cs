using System.CommandLine;
using Vfio.Engine;

namespace Vfio.Cli.Commands;

/// <summary>
/// <c>vfio-mig resolve ID</c>: finishes a held or interrupted migration from the records in the state directory
/// (docs/commit-protocol.md, "Resolving"): exactly one copy runs afterwards.
/// </summary>
internal static class ResolveCommand
{
    public static Command Create()
    {
        var id = new Argument<Guid>("ID")
        {
            Description = "The migration id (printed when the migration started)",
            CustomParser = r =>
            {
                if (Guid.TryParse(r.Tokens[^1].Value, out var guid))
                    return guid;
                r.AddError($"'{r.Tokens[^1].Value}' is not a migration id");
                return Guid.Empty;
            },
        };
        var decision = new Option<string?>("--decision") { Description = "committed or aborted, as printed by resolve on the destination host (on the source host only)" };
        decision.AcceptOnlyFromAmong("committed", "aborted");
        var stateDir = MigrationRecords.StateDirOption();
        var json = CliOptions.Json();
        var command = new Command("resolve", "Finish a held migration: start the destination or resume the source, exactly one.") { id, decision, stateDir, json };
        command.SetAction(async (parse, cancellationToken) =>
        {
            var guid = parse.GetValue(id);
            MigrationDecision? given = parse.GetValue(decision) switch
            {
                null => null,
                "committed" => MigrationDecision.Committed,
                _ => MigrationDecision.Aborted,
            };
            var store = MigrationRecords.Open(parse.GetValue(stateDir));
            var sourceRecord = await store.ReadRecordAsync(guid, MigrationSide.Source, cancellationToken).ConfigureAwait(false);
            var destinationRecord = await store.ReadRecordAsync(guid, MigrationSide.Destination, cancellationToken).ConfigureAwait(false);
            if (sourceRecord is null && destinationRecord is null)
                throw new CliException(ExitCodes.Failed, Errno.ENOENT, "resolve", $"no record of migration {guid} in {store.Directory}", ["run it on the host (and with the --state-dir) of the migration"]);
            if (given is not null && destinationRecord is not null)
                throw CliException.Usage("--decision", "this host has the destination's record, and the destination decides; --decision is for the source host");
            await using var opened = new RecordCommands.OpenedDevices();
            var sources = sourceRecord is null ? null : await opened.OpenAllAsync(sourceRecord, cancellationToken).ConfigureAwait(false);
            var destinations = destinationRecord is null ? null : await opened.OpenAllAsync(destinationRecord, cancellationToken).ConfigureAwait(false);
            MigrationResolution result;
            try
            {
                result = await MigrationResolver.ResolveAsync(guid, store, sources, destinations, given, cancellationToken).ConfigureAwait(false);
            }
            catch (VfioException e) when (e.Errno == Errno.ENOENT)
            {
                // The source host without a decision: not the decision point, so it does not guess.
                throw CliException.WithExitCode(e, ExitCodes.Held, "the source devices stay held (stopped, state intact) until then");
            }
            var decided = result.Decision!.Value;
            FlightRecords.AppendResolution(store.Directory, guid, MigrationResolver.Name(decided), result.Devices.Select(d => (d.Side == MigrationSide.Source ? "source" : "destination", d.Name, d.Action)));
            string? sourceHost = destinationRecord is not null && sourceRecord is null
                ? $"vfio-mig resolve {guid} --decision {MigrationResolver.Name(decided)}"
                : null;
            bool asJson = parse.GetValue(json);
            if (asJson)
            {
                CliJsonContext.Write(Console.Out, RecordCommands.Json(result, sourceHost), CliJsonContext.Default.ResolveJson);
            }
            else
            {
                Console.Out.WriteLine($"migration {guid}: {MigrationResolver.Name(decided)}{(result.DecidedNow ? " (decided now: no commit was recorded)" : "")}");
                foreach (var d in result.Devices)
                    Console.Out.WriteLine($"  {RecordCommands.Side(d.Side)} {d.Name}: {d.Action}");
                if (sourceHost is not null)
                    Console.Out.WriteLine($"on the source host, run: {sourceHost}");
            }
            if (!result.Ok)
            {
                throw new CliException(ExitCodes.Failed, Errno.EIO, "resolve", "a device could not be brought where the decision says (see above)", ["run resolve again once it answers"])
                {
                    DocumentPrinted = asJson,
                };
            }
            return ExitCodes.Success;
        });
        return command;
    }
}
