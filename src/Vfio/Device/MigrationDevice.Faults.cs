using Vfio.Migration;

namespace Vfio.Device;

// Deliberate rule violations for the conformance checker's own tests (EngineFaults). Only reached when
// Faults != None, so a conforming device never runs any of this.
public abstract partial class MigrationDevice
{
    private EngineFaults _faults;

    /// <summary>Deliberate deviations from the core rules (conformance-checker tests only); None by default.</summary>
    internal EngineFaults Faults
    {
        get => _faults;
        init => _faults = value;
    }

    // Must hold the state lock. True when a fault fully answered the SET request.
    private bool TryApplySetStateFault(VfioMigrationState target, out DataSession? opened)
    {
        opened = null;
        if ((_faults & EngineFaults.ErrorSettable) != 0 && target == VfioMigrationState.Error && _state != VfioMigrationState.Error)
        {
            EndSession();
            _state = VfioMigrationState.Error;
            return true;
        }
        if ((_faults & EngineFaults.SameStateOpensStream) != 0 && target == _state && MigrationStateMachine.IsSaving(_state))
        {
            EndSession();
            opened = _session = new DataSession(this, DataSessionKind.Saving, _nextSessionId++);
            return true;
        }
        return false;
    }

    // Skips a RUNNING_P2P step that is not the target, from RUNNING or STOP (e.g. RUNNING>STOP directly on caps 0x3).
    private VfioMigrationState WrongNextState(VfioMigrationState current, VfioMigrationState target, VfioMigrationState next)
    {
        if (next != VfioMigrationState.RunningP2P || target == VfioMigrationState.RunningP2P
            || current is not (VfioMigrationState.Running or VfioMigrationState.Stop))
            return next;
        return MigrationStateMachine.TryGetNextState(VfioMigrationState.RunningP2P, target, Capabilities, out var skipped) == Errno.None && skipped != current
            ? skipped
            : next;
    }
}
