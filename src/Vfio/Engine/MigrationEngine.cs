using System.IO.Pipelines;
using Vfio.Migration;

namespace Vfio.Engine;

/// <summary>
/// In-process live migration: a <see cref="MigrationSource"/> and a <see cref="MigrationDestination"/>
/// run concurrently, connected by two in-memory pipes that carry the stream a network transport would (forward
/// stream and return path); its data frames skip the payload CRC, as the bytes never leave the process
/// (docs/stream-format.md, flags).
/// </summary>
public static class MigrationEngine
{
    /// <summary>
    /// Migrates <paramref name="sources"/>[i] into <paramref name="destinations"/>[i] for every i.
    /// On success the destinations are RUNNING with the sources' state and the sources are in STOP.
    /// </summary>
    /// <returns>The source's statistics (downtime: first source leaving RUNNING → last destination RUNNING).</returns>
    /// <exception cref="ArgumentException">The lists are empty or of different lengths, or the options are invalid.</exception>
    /// <exception cref="MigrationException">The migration failed: the sources are RUNNING with their state unchanged, the destinations were reset;
    /// or, with <see cref="MigrationException.Held"/>, neither runs and <c>vfio-mig resolve</c> finishes it (docs/commit-protocol.md).</exception>
    /// <exception cref="OperationCanceledException">Canceled, with the same guarantees.</exception>
    public static async Task<MigrationStatistics> MigrateAsync(
        IReadOnlyList<IVfioMigrationDevice> sources,
        IReadOnlyList<IVfioMigrationDevice> destinations,
        MigrationOptions? options = null,
        IProgress<MigrationProgress>? progress = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(sources);
        ArgumentNullException.ThrowIfNull(destinations);
        if (sources.Count != destinations.Count)
            throw new ArgumentException($"{sources.Count} source devices but {destinations.Count} destination devices", nameof(destinations));
        options ??= MigrationOptions.Default;
        options.Validate();
        // Both halves see one store, as they would on one host: the destination's decision is the source's too.
        if (options.DecisionStore is null)
            options = options with { DecisionStore = new InMemoryMigrationStore() };

        long pause = 4L * options.BufferBytes;
        var forward = ProcessLocalPipe.Create(new PipeOptions(pauseWriterThreshold: pause, resumeWriterThreshold: pause / 2, useSynchronizationContext: false));
        // The source reads the return path on the destination's thread, as it flushes: LoadResult and Complete are on the
        // downtime's critical path, and a hand-over to an idle pool thread cost up to a millisecond each (performance.md).
        var back = ProcessLocalPipe.Create(new PipeOptions(readerScheduler: PipeScheduler.Inline, useSynchronizationContext: false));
        var source = new MigrationSource(sources, options);
        var destination = new MigrationDestination(destinations, options);

        var destinationTask = Task.Run(() => destination.RunAsync(forward.Reader, back.Writer, null, cancellationToken), CancellationToken.None);
        var sourceTask = Task.Run(() => source.RunAsync(forward.Writer, back.Reader, progress, cancellationToken), CancellationToken.None);
        try
        {
            var statistics = await sourceTask.ConfigureAwait(false);
            await destinationTask.ConfigureAwait(false);
            return statistics;
        }
        catch when (!sourceTask.IsCompleted || sourceTask.IsCompletedSuccessfully)
        {
            // The destination failed after the source succeeded (it could not even send its last frame).
            throw;
        }
        catch
        {
            // The source's exception is the one to report: it names the root cause, wherever it was.
            try
            {
                await destinationTask.ConfigureAwait(false);
            }
            catch (Exception)
            {
                // The same failure seen from the destination (its devices were reset), or a consequence
                // of it; the source's exception names the root cause.
            }
            throw;
        }
    }
}
