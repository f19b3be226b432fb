using System.IO.Pipelines;
using Vfio.Migration;

namespace Vfio.Engine;

/// <summary>
/// The destination half of a live migration: reads the forward stream, puts N destination devices into
/// RESUMING, writes their data, validates (RESUMING→STOP), reports them loaded and waits for the source's
/// Commit; it records the decision (committed, or aborted on any failure before) and only then starts them
/// (→RUNNING, through RUNNING_P2P for P2P devices, all together). It is the decision point of the commit
/// protocol (docs/commit-protocol.md). Before the commit, any failure resets every touched device and an
/// Error frame tells the source; after it, no device is reset any more.
/// </summary>
public sealed class MigrationDestination
{
    private readonly IReadOnlyList<IVfioMigrationDevice> _devices;
    private readonly MigrationOptions _options;

    /// <summary>Creates the destination half for <paramref name="devices"/> (device index = list position).</summary>
    /// <exception cref="ArgumentException">No devices, too many, or invalid options.</exception>
    public MigrationDestination(IReadOnlyList<IVfioMigrationDevice> devices, MigrationOptions? options = null)
    {
        MigrationRunContext.CheckDeviceCount(devices);
        _devices = devices;
        _options = options ?? MigrationOptions.Default;
        _options.Validate();
    }

    /// <summary>
    /// Runs the destination half: <paramref name="input"/> carries the forward stream, <paramref name="returnPath"/>
    /// the replies. Both are completed when this returns.
    /// </summary>
    /// <returns>The destination's statistics once the commit is recorded and every device is RUNNING.</returns>
    /// <exception cref="MigrationException">The migration failed (here or at the source) and was decided aborted; the
    /// destination devices were reset. With <see cref="MigrationException.Held"/>: it was committed but a device
    /// did not start; the devices keep the loaded state for <c>vfio-mig resolve</c>.</exception>
    /// <exception cref="OperationCanceledException">Canceled; the destination devices were reset.</exception>
    public async Task<MigrationStatistics> RunAsync(PipeReader input, PipeWriter returnPath, IProgress<MigrationProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(input);
        ArgumentNullException.ThrowIfNull(returnPath);
        var run = new DestinationRun(_devices, _options, input, returnPath, progress);
        return await run.ExecuteAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Runs the destination half over byte streams (e.g. one <c>NetworkStream</c> for both directions). The streams stay open.</summary>
    /// <inheritdoc cref="RunAsync(PipeReader, PipeWriter, IProgress{MigrationProgress}?, CancellationToken)"/>
    public Task<MigrationStatistics> RunAsync(System.IO.Stream input, System.IO.Stream returnPath, IProgress<MigrationProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(input);
        ArgumentNullException.ThrowIfNull(returnPath);
        return RunAsync(
            StreamPipes.Reader(input),
            StreamPipes.Writer(returnPath),
            progress,
            cancellationToken);
    }
}
