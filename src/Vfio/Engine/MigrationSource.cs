using System.IO.Pipelines;
using Vfio.Migration;

namespace Vfio.Engine;

/// <summary>
/// The source half of a live migration: drives N source devices through setup, pre-copy, switchover and
/// stop-copy, writes the forward migration stream and reads the destination's return path. Whatever
/// fails before it sends Commit, the source devices end up RUNNING again (SET RUNNING, else reset) with their
/// state untouched; after Commit only the destination's answer decides, and without one the sources are held
/// (docs/commit-protocol.md).
/// </summary>
/// <remarks>See docs/engine.md for the algorithm and docs/stream-format.md for the bytes.</remarks>
public sealed class MigrationSource
{
    private readonly IReadOnlyList<IVfioMigrationDevice> _devices;
    private readonly MigrationOptions _options;

    /// <summary>Creates the source half for <paramref name="devices"/> (device index = list position).</summary>
    /// <exception cref="ArgumentException">No devices, too many, or invalid options.</exception>
    public MigrationSource(IReadOnlyList<IVfioMigrationDevice> devices, MigrationOptions? options = null)
    {
        MigrationRunContext.CheckDeviceCount(devices);
        _devices = devices;
        _options = options ?? MigrationOptions.Default;
        _options.Validate();
    }

    /// <summary>
    /// Runs the source half over two pipes: <paramref name="output"/> carries the forward stream,
    /// <paramref name="returnPath"/> the destination's replies. Both are completed when this returns.
    /// </summary>
    /// <returns>The statistics once the destination reported all devices RUNNING and the sources went to STOP.</returns>
    /// <exception cref="MigrationException">The migration failed; the sources are RUNNING again, or, when
    /// <see cref="MigrationException.Held"/> is set, stopped with their state until the migration is resolved.</exception>
    /// <exception cref="OperationCanceledException">Canceled before Commit; the sources are RUNNING again.</exception>
    public async Task<MigrationStatistics> RunAsync(PipeWriter output, PipeReader returnPath, IProgress<MigrationProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(output);
        ArgumentNullException.ThrowIfNull(returnPath);
        var run = new SourceRun(_devices, _options, output, returnPath, progress);
        return await run.ExecuteAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Runs the source half over byte streams (e.g. one <c>NetworkStream</c> for both directions). The streams stay open.</summary>
    /// <inheritdoc cref="RunAsync(PipeWriter, PipeReader, IProgress{MigrationProgress}?, CancellationToken)"/>
    public Task<MigrationStatistics> RunAsync(System.IO.Stream output, System.IO.Stream returnPath, IProgress<MigrationProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(output);
        ArgumentNullException.ThrowIfNull(returnPath);
        return RunAsync(
            StreamPipes.Writer(output),
            StreamPipes.Reader(returnPath),
            progress,
            cancellationToken);
    }
}
