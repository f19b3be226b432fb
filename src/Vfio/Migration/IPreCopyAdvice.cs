namespace Vfio.Migration;

/// <summary>
/// An optional capability of a device: whether pre-copy should be skipped for it as a source, and why. A vfio-user
/// server that answers MIG_DATA_SIZE with EINVAL is libvfio-user, whose pre-copy data its own destination refuses
/// (spec §1.1, §7.5); other devices have no such advice. The CLI's <c>--precopy auto</c> asks it by interface.
/// </summary>
internal interface IPreCopyAdvice
{
    /// <summary>A note for the user when pre-copy should be skipped for this source, else null.</summary>
    ValueTask<string?> ReasonToSkipPreCopyAsync(CancellationToken cancellationToken);
}
