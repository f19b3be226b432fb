namespace Vfio.Device;

/// <summary>
/// Deliberate deviations from the core rules that only the engine can commit (test seam for the
/// conformance checker's own tests; see <c>Vfio.Sample.SampleDeviceFaults</c>). Internal: device authors
/// outside this assembly cannot switch them on. <see cref="None"/> is the conforming engine.
/// </summary>
[Flags]
internal enum EngineFaults
{
    None = 0,
    /// <summary>A PRE_COPY read at the temporary end returns 0 instead of ENOMSG (mtty style; spec §4.5).</summary>
    PreCopyEndReturnsZero = 1 << 0,
    /// <summary>A STOP_COPY read at the end throws ENOMSG instead of returning 0 (violates §4.2).</summary>
    StopCopyEndIsEnomsg = 1 << 1,
    /// <summary>Terminated streams keep reading/writing instead of ENODEV (violates §4.4).</summary>
    StaleSessionsStayUsable = 1 << 2,
    /// <summary>From RUNNING or STOP, a step to RUNNING_P2P is skipped when it is not the target (violates §2.3).</summary>
    WrongPath = 1 << 3,
    /// <summary>Requests the kernel rejects succeed as silent no-ops (violates §2.5).</summary>
    IgnoreRejectedRequests = 1 << 4,
    /// <summary>ERROR can be requested and is entered (violates §2.5, §3.3).</summary>
    ErrorSettable = 1 << 5,
    /// <summary>Requesting the current saving state opens a new stream (violates §2.4).</summary>
    SameStateOpensStream = 1 << 6,
    /// <summary>VFIO_MIG_GET_PRECOPY_INFO answers in every state (violates §4.6).</summary>
    PrecopyInfoInAnyState = 1 << 7,
    /// <summary>Precopy initial_bytes grows with the bytes read instead of counting down (violates §4.6).</summary>
    InitialBytesGrow = 1 << 9,
    /// <summary>DMA logging START/REPORT skip the core's validation (violates §5.1, §5.3).</summary>
    SkipDmaLoggingValidation = 1 << 8,
}
