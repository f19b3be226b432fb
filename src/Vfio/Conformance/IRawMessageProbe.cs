namespace Vfio.Conformance;

/// <summary>
/// Optional: a device whose transport can send raw, deliberately malformed messages (vfio-user) implements
/// this, and <c>vfio-mig check</c> runs it as the <c>robustness</c> group. Devices without it get the group
/// skipped with a reason.
/// </summary>
public interface IRawMessageProbe
{
    /// <summary>
    /// Runs the transport's raw-message checks and returns one result per rule, each with group
    /// <see cref="ConformanceGroups.Robustness"/>. The device must be usable (RUNNING) afterwards.
    /// </summary>
    ValueTask<IReadOnlyList<ConformanceResult>> RunRawMessageChecksAsync(CancellationToken cancellationToken = default);
}
