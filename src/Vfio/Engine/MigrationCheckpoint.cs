namespace Vfio.Engine;

/// <summary>
/// Points of the protocol at which <see cref="MigrationOptions.Checkpoint"/> is called: where a fault test stops,
/// cuts or kills a side (docs/commit-protocol.md).
/// </summary>
public enum MigrationCheckpoint : byte
{
    /// <summary>Source: every device is in PRE_COPY, before the first round.</summary>
    PreCopy = 1,

    /// <summary>Source: every device is in STOP_COPY, before its data is read.</summary>
    StopCopy = 2,

    /// <summary>Destination: every device loaded and validated (STOP), reported; before waiting for Commit.</summary>
    Loaded = 3,

    /// <summary>Destination: the decision committed is recorded; before any device starts.</summary>
    Committed = 4,

    /// <summary>Source: the destination reported its devices running; before the sources go to STOP.</summary>
    Started = 5,
}
