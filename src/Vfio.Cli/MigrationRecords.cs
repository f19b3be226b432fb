using System.CommandLine;
using Vfio.Engine;
using Vfio.Migration;
using Vfio.Records;

namespace Vfio.Cli;

/// <summary>
/// The CLI side of the commit protocol (docs/commit-protocol.md): the <c>--state-dir</c> option, the file store,
/// and the lines every migrating command prints after a failure — each device's state and, when held, the one
/// command that resolves it.
/// </summary>
internal static class MigrationRecords
{
    public static Option<string?> StateDirOption() => new("--state-dir")
    {
        Description = "Where migration records and decisions are kept (default $XDG_STATE_HOME/vfio-mig, ~/.local/state/vfio-mig, /var/lib/vfio-mig as root)",
    };

    public static FileMigrationStore Open(string? directory) => new(directory ?? FileMigrationStore.DefaultDirectory());

    /// <summary>The <c>vfio-mig resolve</c> command for <paramref name="id"/> (with the state directory when one was given).</summary>
    public static string ResolveCommand(Guid id, string? stateDir)
        => $"vfio-mig resolve {id}{(stateDir is null ? "" : " --state-dir " + stateDir)}";

    /// <summary>
    /// After a failure: one line per device, saying where it is and what that means, then — when held — the resolve
    /// command. Never claims more than the device shows.
    /// </summary>
    public static async Task ReportAsync(string command, IEnumerable<(MigrationSide Side, IVfioMigrationDevice Device)> devices, bool held, Guid id, string? stateDir, IReadOnlyList<string>? resolveHints = null)
    {
        foreach (var (side, device) in devices)
            await Console.Error.WriteLineAsync($"vfio-mig {command}: {Describe(side)} {device.Name}: {await StateLineAsync(side, device, held).ConfigureAwait(false)}").ConfigureAwait(false);
        if (held)
        {
            await Console.Error.WriteLineAsync($"vfio-mig {command}: migration {id} is HELD: neither copy runs and the state is intact; the outcome is decided on the destination").ConfigureAwait(false);
            foreach (string hint in resolveHints ?? [$"resolve it with: {ResolveCommand(id, stateDir)}"])
                await Console.Error.WriteLineAsync("  hint: " + hint).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// The command the source host runs to apply <paramref name="decision"/> recorded here (a destination host), for
    /// the hint a receiver prints when its sender may have been left stopped or gone.
    /// </summary>
    public static string SourceHostHint(Guid id, MigrationDecision decision) => decision == MigrationDecision.Committed
        ? $"on the sending host: vfio-mig resolve {id} --decision committed (with its --state-dir, if it has one) settles the source, which must stay stopped"
        : $"on the sending host: vfio-mig resolve {id} --decision aborted (with its --state-dir, if it has one) resumes the source if it was left stopped";

    /// <summary>The decision recorded for <paramref name="id"/>, or null when none is or it cannot be read (for hints after a failure).</summary>
    public static async Task<MigrationDecisionRecord?> TryReadDecisionAsync(IMigrationDecisionStore store, Guid id)
    {
        try
        {
            return await store.ReadDecisionAsync(id, CancellationToken.None).ConfigureAwait(false);
        }
        catch (VfioException)
        {
            return null;
        }
    }

    private static string Describe(MigrationSide side) => side == MigrationSide.Source ? "source" : "destination";

    private static async Task<string> StateLineAsync(MigrationSide side, IVfioMigrationDevice device, bool held)
    {
        VfioMigrationState state;
        try
        {
            state = await device.GetStateAsync().ConfigureAwait(false);
        }
        catch (VfioException e)
        {
            return $"state unknown ({e.Message})";
        }
        string name = MigrationStateMachine.Name(state);
        return (side, state, held) switch
        {
            (MigrationSide.Source, VfioMigrationState.Running, _) => "RUNNING (resumed; its state is intact)",
            (MigrationSide.Source, VfioMigrationState.Stop, false) => "STOP (the migration was committed: the destination owns the state; this copy must not run again)",
            (MigrationSide.Source, _, true) => $"held in {name} (stopped, its state intact; it must not run until the migration is resolved)",
            (MigrationSide.Source, _, false) => $"in {name}",
            (MigrationSide.Destination, VfioMigrationState.Running, false) => "RUNNING after a reset: it holds nothing usable of this migration (a reset does not clear device memory; data written during the load may remain)",
            (MigrationSide.Destination, VfioMigrationState.Running, true) => "RUNNING with the migrated state",
            (MigrationSide.Destination, _, true) => $"held in {name} (it keeps the loaded state; it starts only when the migration is resolved)",
            _ => $"in {name}",
        };
    }
}

/// <summary>
/// A store that remembers the id of the last record the engine wrote through it: a receiver learns its migration's id
/// from the sender's Begin, and needs it after a failure the engine did not attach it to.
/// </summary>
internal sealed class WatchedMigrationStore(IMigrationDecisionStore inner) : IMigrationDecisionStore
{
    /// <summary>The id of the last record written, or <see cref="Guid.Empty"/>.</summary>
    public Guid LastId { get; private set; }

    public ValueTask WriteRecordAsync(MigrationRecord record, CancellationToken cancellationToken = default)
    {
        LastId = record.Id;
        return inner.WriteRecordAsync(record, cancellationToken);
    }

    public ValueTask<MigrationRecord?> ReadRecordAsync(Guid id, MigrationSide side, CancellationToken cancellationToken = default) => inner.ReadRecordAsync(id, side, cancellationToken);

    public ValueTask<IReadOnlyList<MigrationRecord>> ListRecordsAsync(CancellationToken cancellationToken = default) => inner.ListRecordsAsync(cancellationToken);

    public ValueTask<MigrationDecisionRecord> DecideAsync(MigrationDecisionRecord decision, CancellationToken cancellationToken = default) => inner.DecideAsync(decision, cancellationToken);

    public ValueTask<MigrationDecisionRecord?> ReadDecisionAsync(Guid id, CancellationToken cancellationToken = default) => inner.ReadDecisionAsync(id, cancellationToken);

    // Forwarded, or the inner store's write-ahead would be lost to the interface's default.
    public ValueTask<IPreparedDecision> PrepareDecisionAsync(MigrationDecisionRecord decision, CancellationToken cancellationToken = default) => inner.PrepareDecisionAsync(decision, cancellationToken);
}
