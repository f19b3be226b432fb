using Vfio.Migration;

namespace Vfio.Conformance;

// Arc tracing for the in-process transport: the device engine raises ArcCommitted for every arc.
internal sealed class InProcessArcTrace : IMigrationArcTrace
{
    private readonly Vfio.Device.MigrationDevice _device;

    private InProcessArcTrace(Vfio.Device.MigrationDevice device) => _device = device;

    public static IMigrationArcTrace? TryCreate(IVfioMigrationDevice device)
        => device is InProcessMigrationDevice inProcess ? new InProcessArcTrace(inProcess.Device) : null;

    public IDisposable SubscribeArcs(Action<MigrationArc> onArc)
    {
        ArgumentNullException.ThrowIfNull(onArc);
        void Handler(object? sender, MigrationArc arc) => onArc(arc);
        _device.ArcCommitted += Handler;
        return new Subscription(() => _device.ArcCommitted -= Handler);
    }

    private sealed class Subscription(Action unsubscribe) : IDisposable
    {
        private Action? _unsubscribe = unsubscribe;

        public void Dispose() => Interlocked.Exchange(ref _unsubscribe, null)?.Invoke();
    }
}
