using System.CommandLine;
using Vfio.Engine;
using Vfio.Migration;

namespace Vfio.Cli.Commands;

/// <summary>
/// <c>vfio-mig recover ADDRESS</c>: returns one device left mid-migration to service — a source to RUNNING, a
/// destination reset — when the records say its migration is aborted (docs/commit-protocol.md).
/// </summary>
internal static class RecoverCommand
{
    public static Command Create()
    {
        var address = new Argument<string>("ADDRESS") { Description = "The device: unix:PATH or vfio:NAME" };
        var force = new Option<bool>("--force") { Description = "Resume a source no record explains, or whose decision is unknown (two copies run if the migration was committed elsewhere)" };
        var stateDir = MigrationRecords.StateDirOption();
        var json = new Option<bool>("--json") { Description = "Print one JSON object" };
        var command = new Command("recover", "Return a held or stranded device to RUNNING (or reset a destination) when its migration is known aborted.") { address, force, stateDir, json };
        command.SetAction(async (parse, cancellationToken) =>
        {
            IVfioMigrationDevice? device = null;
            try
            {
                var where = DeviceAddress.Parse(parse.GetValue(address)!);
                if (where.Scheme == "sample")
                {
                    Console.Error.WriteLine("vfio-mig recover: error: EINVAL: a sample: device lives in one process; there is nothing to recover");
                    return ExitCodes.Usage;
                }
                device = await where.OpenAsync(cancellationToken).ConfigureAwait(false);
                var store = MigrationRecords.Open(parse.GetValue(stateDir));
                bool forced = parse.GetValue(force);
                if (forced)
                    Console.Error.WriteLine($"vfio-mig recover: warning: --force: if a migration of {device.Name} was committed on another host, its destination runs too and two copies now run");
                var result = await MigrationResolver.RecoverAsync(device, store, forced, cancellationToken).ConfigureAwait(false);
                if (parse.GetValue(json))
                {
                    Console.Out.WriteLine(ResolveCommand.Json(result, null));
                }
                else
                {
                    foreach (var d in result.Devices)
                        Console.Out.WriteLine($"{d.Name}: {d.Action}{(result.Id == Guid.Empty ? "" : $" (migration {result.Id}{(result.Decision is { } dec ? ", " + MigrationResolver.Name(dec) : ", decision unknown")})")}");
                }
                return result.Ok ? ExitCodes.Success : ExitCodes.Failed;
            }
            catch (VfioException e)
            {
                Console.Error.WriteLine($"vfio-mig recover: error: {e.Message}");
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
}
