using Vfio.Migration;

namespace Vfio.Device;

// One hook per legal arc (spec §2.6, §2.7) and the data-plane hooks device authors implement.
// A hook that throws fails its arc: the device stays in the arc's from-state (or ERROR when the hook
// called RequestErrorState first). All hooks run under the device's state lock.
public abstract partial class MigrationDevice
{
    /// <summary>RUNNING→RUNNING_P2P: stop initiating peer-to-peer DMA, drain outstanding P2P.</summary>
    protected virtual void OnRunningToRunningP2P() { }

    /// <summary>RUNNING_P2P→RUNNING: resume full operation.</summary>
    protected virtual void OnRunningP2PToRunning() { }

    /// <summary>RUNNING_P2P→STOP: full stop (no DMA, no interrupts, no internal change).</summary>
    protected virtual void OnRunningP2PToStop() { }

    /// <summary>STOP→RUNNING_P2P: restart without P2P initiation.</summary>
    protected virtual void OnStopToRunningP2P() { }

    /// <summary>RUNNING→STOP (caps without P2P): full stop.</summary>
    protected virtual void OnRunningToStop() { }

    /// <summary>STOP→RUNNING (caps without P2P): restart.</summary>
    protected virtual void OnStopToRunning() { }

    /// <summary>STOP→STOP_COPY: start saving; the whole state becomes readable on a new stream.</summary>
    protected abstract void OnStopToStopCopy();

    /// <summary>STOP_COPY→STOP: the saving phase ends; the stream is terminated after the hook.</summary>
    protected virtual void OnStopCopyToStop() { }

    /// <summary>STOP→RESUMING: prepare to load; a new resuming stream opens after the hook.</summary>
    protected abstract void OnStopToResuming();

    /// <summary>RESUMING→STOP: validate and apply what was written; throw (EINVAL) when incomplete or invalid.</summary>
    protected abstract void OnResumingToStop();

    /// <summary>RUNNING→PRE_COPY: start saving while running (and start internal dirty tracking).</summary>
    protected virtual void OnRunningToPreCopy() => throw new VfioException(Errno.EINVAL, "arc RUNNING>PRE_COPY", "the device does not implement PRE_COPY");

    /// <summary>PRE_COPY→RUNNING: abort pre-copy; the stream is terminated after the hook.</summary>
    protected virtual void OnPreCopyToRunning() { }

    /// <summary>PRE_COPY→STOP_COPY (caps 0x5): stop the device; the rest follows on the same stream.</summary>
    protected virtual void OnPreCopyToStopCopy() => throw new VfioException(Errno.EINVAL, "arc PRE_COPY>STOP_COPY", "the device does not implement PRE_COPY");

    /// <summary>PRE_COPY→PRE_COPY_P2P: P2P quiescence while pre-copying.</summary>
    protected virtual void OnPreCopyToPreCopyP2P() { }

    /// <summary>PRE_COPY_P2P→PRE_COPY: resume P2P while pre-copying.</summary>
    protected virtual void OnPreCopyP2PToPreCopy() { }

    /// <summary>PRE_COPY_P2P→RUNNING_P2P: abort pre-copy; the stream is terminated after the hook.</summary>
    protected virtual void OnPreCopyP2PToRunningP2P() { }

    /// <summary>PRE_COPY_P2P→STOP_COPY: stop the device; the rest follows on the same stream.</summary>
    protected virtual void OnPreCopyP2PToStopCopy() => throw new VfioException(Errno.EINVAL, "arc PRE_COPY_P2P>STOP_COPY", "the device does not implement PRE_COPY");

    /// <summary>RUNNING_P2P→PRE_COPY_P2P: start saving while P2P-quiesced; a new stream opens.</summary>
    protected virtual void OnRunningP2PToPreCopyP2P() => throw new VfioException(Errno.EINVAL, "arc RUNNING_P2P>PRE_COPY_P2P", "the device does not implement PRE_COPY");

    /// <summary>
    /// Fills <paramref name="destination"/> with the next bytes of the saving stream and returns how many.
    /// Return 0 when nothing is available: in STOP_COPY that is the permanent end of the stream, in
    /// PRE_COPY the engine turns it into ENOMSG (temporary end).
    /// </summary>
    protected abstract int ReadSavingData(Span<byte> destination, VfioMigrationState state);

    /// <summary>
    /// Optional zero-copy STOP_COPY saving, for a device whose stream bytes already sit in its own memory: returns
    /// the next up to <paramref name="maxLength"/> bytes of the stream and consumes them (as a read would), or null
    /// to be read through <see cref="ReadSavingData"/> instead. Only asked in STOP_COPY, where the device is stopped,
    /// and the memory must stay unchanged until the session ends: a transport may still be sending it after the call.
    /// An empty result is the end of the stream.
    /// </summary>
    protected virtual ReadOnlyMemory<byte>? TakeStopCopyData(int maxLength) => null;

    /// <summary>Consumes the next bytes of the resuming stream, in order; throw to reject them.</summary>
    protected abstract void WriteResumingData(ReadOnlySpan<byte> source);

    /// <summary>Initial and dirty bytes pending on the PRE_COPY stream (spec §4.6).</summary>
    protected virtual PrecopyEstimate GetPrecopyEstimate() => default;

    /// <summary>The STOP_COPY size estimate (spec §4.8).</summary>
    protected abstract ulong EstimateStopCopySize();

    /// <summary>Called on reset, after sessions were terminated and the state became RUNNING.</summary>
    protected virtual void OnReset() { }

    /// <summary>Called when a session ends (by an arc, a reset or disposal), so the device can free stream buffers.</summary>
    protected virtual void OnSessionEnded(DataSessionKind kind) { }

    private void InvokeArcHook(MigrationArc arc)
    {
        const VfioMigrationState S = VfioMigrationState.Stop, R = VfioMigrationState.Running, SC = VfioMigrationState.StopCopy,
            RS = VfioMigrationState.Resuming, RP = VfioMigrationState.RunningP2P, PC = VfioMigrationState.PreCopy, PP = VfioMigrationState.PreCopyP2P;
        switch (arc.From, arc.To)
        {
            case (R, RP): OnRunningToRunningP2P(); break;
            case (RP, R): OnRunningP2PToRunning(); break;
            case (RP, S): OnRunningP2PToStop(); break;
            case (S, RP): OnStopToRunningP2P(); break;
            case (R, S): OnRunningToStop(); break;
            case (S, R): OnStopToRunning(); break;
            case (S, SC): OnStopToStopCopy(); break;
            case (SC, S): OnStopCopyToStop(); break;
            case (S, RS): OnStopToResuming(); break;
            case (RS, S): OnResumingToStop(); break;
            case (R, PC): OnRunningToPreCopy(); break;
            case (PC, R): OnPreCopyToRunning(); break;
            case (PC, SC): OnPreCopyToStopCopy(); break;
            case (PC, PP): OnPreCopyToPreCopyP2P(); break;
            case (PP, PC): OnPreCopyP2PToPreCopy(); break;
            case (PP, RP): OnPreCopyP2PToRunningP2P(); break;
            case (PP, SC): OnPreCopyP2PToStopCopy(); break;
            case (RP, PP): OnRunningP2PToPreCopyP2P(); break;
            default:
                throw new VfioException(Errno.EINVAL, $"arc {arc}", "not a legal arc");
        }
    }
}
