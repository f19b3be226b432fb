namespace Vfio.Engine;

/// <summary>The phases of a live migration, in order (the value travels in status frames).</summary>
public enum MigrationPhase : byte
{
    /// <summary>Capability probing on both sides, destinations to RESUMING, stream headers.</summary>
    Setup = 1,

    /// <summary>Sources in PRE_COPY: rounds of reads while the devices run; waiting for convergence and switchover-acks.</summary>
    PreCopy = 2,

    /// <summary>Sources quiesced (P2P states) and stopped (STOP_COPY).</summary>
    Switchover = 3,

    /// <summary>Sources drained to the end of their saving streams.</summary>
    StopCopy = 4,

    /// <summary>Destinations RESUMING→STOP: the devices validate and apply what was written.</summary>
    Validate = 5,

    /// <summary>Destinations to RUNNING (through RUNNING_P2P for P2P devices).</summary>
    Start = 6,

    /// <summary>Sources STOP_COPY→STOP after the destination reported success.</summary>
    Cleanup = 7,

    /// <summary>Done.</summary>
    Completed = 8,
}
