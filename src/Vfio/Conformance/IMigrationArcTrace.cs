using Vfio.Migration;

namespace Vfio.Conformance;

/// <summary>
/// Optional: a device (or transport) that can report the single arcs it walks, so the checker can compare
/// them with fsm-paths.csv (rule <c>fsm.arc-trace</c>). The in-process transport is traced automatically.
/// </summary>
public interface IMigrationArcTrace
{
    /// <summary>Calls <paramref name="onArc"/> for every arc the device commits until the result is disposed.</summary>
    IDisposable SubscribeArcs(Action<MigrationArc> onArc);
}
