namespace Vfio.Sample;

/// <summary>
/// Deliberate protocol violations the sample device can commit, so that every `vfio-mig check` rule can be
/// shown to fail on a device that breaks it (docs/conformance.md). Command-line names are in
/// <see cref="SampleDeviceFaultNames"/>. <see cref="None"/> is a conforming device.
/// </summary>
[Flags]
public enum SampleDeviceFaults
{
    /// <summary>A conforming device.</summary>
    None = 0,
    /// <summary><c>skip-enomsg</c>: a PRE_COPY read at the temporary end returns 0 instead of ENOMSG (spec §4.5; what mtty does).</summary>
    SkipEnomsg = 1 << 0,
    /// <summary><c>reuse-stream</c>: a terminated stream keeps working instead of failing with ENODEV (spec §4.4).</summary>
    ReuseStream = 1 << 1,
    /// <summary><c>accept-truncated</c>: RESUMING→STOP accepts an incomplete stream (spec §2.7, §4.3).</summary>
    AcceptTruncated = 1 << 2,
    /// <summary><c>wrong-path</c>: skips RUNNING_P2P inside longer paths, e.g. RUNNING→STOP directly on caps 0x3 (spec §2.3, §2.8).</summary>
    WrongPath = 1 << 3,
    /// <summary><c>bad-estimate</c>: the STOP_COPY size estimate is 0 (spec §4.8).</summary>
    BadEstimate = 1 << 4,
    /// <summary><c>logging-no-validate</c>: DMA logging START/REPORT skip the core's checks, e.g. accept 0 ranges (spec §5.1, §5.3).</summary>
    LoggingNoValidate = 1 << 5,
    /// <summary><c>logging-no-clear</c>: DMA logging REPORT does not clear what it reported (spec §5.3).</summary>
    LoggingNoClear = 1 << 6,
    /// <summary><c>no-eof</c>: the end of a STOP_COPY stream is ENOMSG instead of 0 (spec §4.2).</summary>
    NoEof = 1 << 7,
    /// <summary><c>ignore-invalid</c>: requests the kernel rejects with EINVAL succeed as no-ops (spec §2.5).</summary>
    IgnoreInvalid = 1 << 8,
    /// <summary><c>error-settable</c>: ERROR can be requested and is entered (spec §2.5, §3.3).</summary>
    ErrorSettable = 1 << 9,
    /// <summary><c>same-state-stream</c>: requesting the current saving state opens a new stream (spec §2.4).</summary>
    SameStateStream = 1 << 10,
    /// <summary><c>info-any-state</c>: VFIO_MIG_GET_PRECOPY_INFO answers outside PRE_COPY (spec §4.6).</summary>
    InfoAnyState = 1 << 11,
    /// <summary><c>initial-bytes-grow</c>: precopy initial_bytes grows while the stream is read (spec §4.6).</summary>
    InitialBytesGrow = 1 << 12,
    /// <summary><c>accept-corrupt</c>: a resuming stream that fails validation (CRC, order) is accepted at RESUMING→STOP (spec §4.3).</summary>
    AcceptCorrupt = 1 << 13,
    /// <summary><c>refuse-arc</c>: the arc back to RUNNING (RUNNING_P2P→RUNNING, or STOP→RUNNING without P2P) fails with EIO (spec §2.6).</summary>
    RefuseArc = 1 << 14,
    /// <summary><c>corrupt-load</c>: loading a stream flips a byte of page 0, so a re-save differs (spec §4.3).</summary>
    CorruptLoad = 1 << 15,
}
