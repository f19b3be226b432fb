namespace Vfio.Migration;

/// <summary>The device_state values of <c>enum vfio_device_mig_state</c> (spec §1.1); a u32 on the wire.</summary>
public enum VfioMigrationState : uint
{
    /// <summary>VFIO_DEVICE_STATE_ERROR: never settable; only reset leaves it.</summary>
    Error = 0,
    /// <summary>VFIO_DEVICE_STATE_STOP.</summary>
    Stop = 1,
    /// <summary>VFIO_DEVICE_STATE_RUNNING.</summary>
    Running = 2,
    /// <summary>VFIO_DEVICE_STATE_STOP_COPY.</summary>
    StopCopy = 3,
    /// <summary>VFIO_DEVICE_STATE_RESUMING.</summary>
    Resuming = 4,
    /// <summary>VFIO_DEVICE_STATE_RUNNING_P2P.</summary>
    RunningP2P = 5,
    /// <summary>VFIO_DEVICE_STATE_PRE_COPY.</summary>
    PreCopy = 6,
    /// <summary>VFIO_DEVICE_STATE_PRE_COPY_P2P.</summary>
    PreCopyP2P = 7,
}
