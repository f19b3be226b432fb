using System.CommandLine;
using Vfio.Engine;

namespace Vfio.Cli.Commands;

/// <summary>
/// <c>vfio-mig recover ADDRESS</c>: returns one device left mid-migration to service — a source to RUNNING, a
/// destination reset — when the records say its migration is aborted (docs/commit-protocol.md).
/// </summary>
internal static class RecoverCommand
{
    public static Command Create()
    {
        var address = RecordCommands.Address();
        var force = new Option<bool>("--force") { Description = "Resume a source no record explains, or whose decision is unknown (two copies run if the migration was committed elsewhere)" };
        var stateDir = MigrationRecords.StateDirOption();
        var json = CliOptions.Json();
        var command = new Command("recover", "Return a held or stranded device to RUNNING (or reset a destination) when its migration is known aborted.") { address, force, stateDir, json };
        command.SetAction(async (parse, cancellationToken) =>
        {
            await using var device = await RecordCommands.OpenAsync(parse.GetValue(address)!, cancellationToken).ConfigureAwait(false);
            var store = MigrationRecords.Open(parse.GetValue(stateDir));
            bool forced = parse.GetValue(force);
            if (forced)
                Console.Error.WriteLine($"vfio-mig recover: warning: --force: if a migration of {device.Name} was committed on another host, its destination runs too and two copies now run");
            var result = await MigrationResolver.RecoverAsync(device, store, forced, cancellationToken).ConfigureAwait(false);
            bool asJson = parse.GetValue(json);
            if (asJson)
            {
                CliJsonContext.Write(Console.Out, RecordCommands.Json(result, null), CliJsonContext.Default.ResolveJson);
            }
            else
            {
                string migration = result.Id == Guid.Empty ? ""
                    : $" (migration {result.Id}{(result.Decision is { } dec ? ", " + MigrationResolver.Name(dec) : ", decision unknown")})";
                foreach (var d in result.Devices)
                    Console.Out.WriteLine($"{d.Name}: {d.Action}{migration}");
            }
            if (!result.Ok)
                throw new CliException(ExitCodes.Failed, Errno.EIO, "recover", $"{device.Name} could not be brought back (see above)") { DocumentPrinted = asJson };
            return ExitCodes.Success;
        });
        return command;
    }
}
