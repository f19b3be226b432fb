using Vfio.Migration;

namespace Vfio.Conformance;

/// <summary>
/// <c>vfio-mig check</c>: runs the conformance rules of <see cref="ConformanceCatalog"/> against any
/// migration-capable device through the transport-neutral <see cref="IVfioMigrationDevice"/> and returns
/// structured results. The device is returned to RUNNING at the end (reset if needed).
/// </summary>
/// <remarks>
/// The checker assumes the device is dedicated to the test: it stops it, moves it through every state
/// (RESUMING included) and resets it. Loading migration data into the device (which replaces its state)
/// happens only with <see cref="ConformanceOptions.AllowDestructive"/>; otherwise those checks resume into
/// <see cref="ConformanceOptions.Peer"/> or are skipped with a reason.
/// </remarks>
public static class ConformanceChecker
{
    /// <summary>Runs the selected groups against <paramref name="device"/>.</summary>
    /// <exception cref="ArgumentException">An unknown group was selected.</exception>
    public static async Task<ConformanceReport> RunAsync(IVfioMigrationDevice device, ConformanceOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(device);
        options ??= new ConformanceOptions();
        if (options.Groups is { } groups)
        {
            foreach (var g in groups)
            {
                if (!ConformanceGroups.Selectable.Contains(g))
                    throw new ArgumentException($"unknown group '{g}' (one of {string.Join(", ", ConformanceGroups.Selectable)})", nameof(options));
            }
        }
        if (options.ChunkSize <= 0)
            throw new ArgumentException("ChunkSize must be positive", nameof(options));
        var run = new CheckRun(device, options);
        return await run.RunAsync(cancellationToken).ConfigureAwait(false);
    }
}
