namespace Vfio.Device;

/// <summary>The direction of a migration data session.</summary>
public enum DataSessionKind
{
    /// <summary>A saving stream (read side): opened by STOP→STOP_COPY, RUNNING→PRE_COPY or RUNNING_P2P→PRE_COPY_P2P.</summary>
    Saving,
    /// <summary>A resuming stream (write side): opened by STOP→RESUMING.</summary>
    Resuming,
}
