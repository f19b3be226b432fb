namespace Vfio.Migration;

/// <summary>What an arc does to the migration data stream (spec §2.7, "fd effect" column).</summary>
public enum DataSessionEffect
{
    /// <summary>No data stream is involved.</summary>
    None,
    /// <summary>Opens a new saving stream (STOP→STOP_COPY, RUNNING→PRE_COPY, RUNNING_P2P→PRE_COPY_P2P).</summary>
    OpensSaving,
    /// <summary>Opens a new resuming stream (STOP→RESUMING).</summary>
    OpensResuming,
    /// <summary>Stays inside the saving group; the same stream continues.</summary>
    ContinuesSaving,
    /// <summary>Terminates the open stream (STOP_COPY→STOP, PRE_COPY→RUNNING, PRE_COPY_P2P→RUNNING_P2P, RESUMING→STOP).</summary>
    EndsSession,
}
