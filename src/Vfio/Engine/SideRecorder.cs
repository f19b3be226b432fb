using Microsoft.Extensions.Logging;
using Vfio.Migration;

namespace Vfio.Engine;

// One side's record in the store, shared by both halves. Once the outcome is settled a record that cannot be
// written must not replace the outcome: it is logged and becomes a warning.
// Each status written is also an event of the run's trace (its outcome, for the flight record).
internal sealed class SideRecorder(IMigrationDecisionStore store, MigrationSide side, IReadOnlyList<IVfioMigrationDevice> devices, ILogger log, List<string> warnings, MigrationTrace trace)
{
    public Guid Id { get; set; }

    public MigrationTrace Trace => trace;

    public ValueTask WriteAsync(MigrationRecordStatus status, string detail, CancellationToken token)
    {
        trace.Record(status, detail);
        return store.WriteRecordAsync(new MigrationRecord(Id, side, [.. devices.Select(d => d.Name)], status, detail, DateTimeOffset.UtcNow), token);
    }

    public async Task WriteQuietlyAsync(MigrationRecordStatus status, string detail)
    {
        if (Id == Guid.Empty)
            return;
        try
        {
            await WriteAsync(status, detail, CancellationToken.None).ConfigureAwait(false);
        }
        catch (VfioException e)
        {
            EngineLog.RecoveryProblem(log, side, $"could not record the outcome of migration {Id}: {e.Message}");
            warnings.Add($"could not record the outcome of migration {Id}: {e.Message}");
        }
    }

    public static ValueTask CheckpointAsync(MigrationOptions options, MigrationCheckpoint point, CancellationToken token)
        => options.Checkpoint is { } hook ? hook(point, token) : ValueTask.CompletedTask;
}
