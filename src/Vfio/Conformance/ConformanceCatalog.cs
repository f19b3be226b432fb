namespace Vfio.Conformance;

/// <summary>Every rule of <c>vfio-mig check</c>, in run order (docs/conformance.md mirrors this list).</summary>
public static class ConformanceCatalog
{
    private const string P = ConformanceGroups.Probe, F = ConformanceGroups.Fsm, S = ConformanceGroups.Sessions,
        PC = ConformanceGroups.PreCopy, RT = ConformanceGroups.RoundTrip, D = ConformanceGroups.DirtyLogging, RB = ConformanceGroups.Robustness;

    /// <summary>All rules.</summary>
    public static IReadOnlyList<ConformanceRule> Rules { get; } =
    [
        new(P, "probe.capabilities", "§1.2, §4.9", "GET MIGRATION answers with a defined capability set (0x1, 0x3, 0x5 or 0x7)"),
        new(P, "probe.state", "§1.1", "GET MIG_DEVICE_STATE answers with a valid state, and the device can be brought to RUNNING (SET RUNNING, SET STOP then RUNNING, or reset)"),
        new(P, "probe.reset", "§3.4", "VFIO_DEVICE_RESET returns the device to RUNNING from every state it is tried in (RUNNING and STOP in the probe, then wherever the run needs one)"),
        new(P, "probe.read-size", "§4.2", "a STOP_COPY stream answers reads of the checker's chunk size (a read may return fewer bytes, it may not refuse the size)"),

        new(P, "probe.restore", "§3.4", "after the run the device is back in RUNNING (by legal arcs or a reset)"),

        new(F, "fsm.legal-arcs", "§2.6, §2.7", "every legal single arc succeeds, GET shows the target, and a stream is returned exactly when the arc opens one"),
        new(F, "fsm.paths", "§2.4, §2.8", "every multi-arc request of fsm-paths.csv succeeds, GET shows the target, and a stream is returned exactly when the last arc opens one"),
        new(F, "fsm.arc-trace", "§2.3, §2.8", "the device walks exactly the arcs of fsm-paths.csv (needs a transport that reports arcs)"),
        new(F, "fsm.same-state", "§2.4", "requesting the current state succeeds, changes nothing and returns no stream"),
        new(F, "fsm.rejections", "§2.5", "requests fsm-paths.csv marks !EINVAL (and targets >= 8) fail with EINVAL and leave the state unchanged"),
        new(F, "fsm.error-unrequestable", "§2.5, §3.3", "requesting ERROR fails with EINVAL from every state and leaves the state unchanged"),

        new(S, "sessions.stale-stream", "§2.7, §4.4", "every session gets a new stream; once a session ends its stream answers ENODEV, also while a later session is open"),
        new(S, "sessions.stale-after-reset", "§3.4, §4.4", "a reset terminates saving and resuming streams (ENODEV) and leaves the device in RUNNING"),
        new(S, "sessions.stop-copy-eof", "§4.2", "a STOP_COPY stream ends with read() = 0, keeps returning 0, and never answers ENOMSG"),
        new(S, "sessions.same-state-no-stream", "§2.4, §4.1", "requesting STOP_COPY while in STOP_COPY returns no new stream and the open stream stays valid"),
        new(S, "sessions.stop-copy-size", "§4.8", "the STOP_COPY size estimate is > 0 and at least half of the bytes a STOP_COPY stream then delivers"),
        new(S, "sessions.resume-truncated", "§2.7, §4.3", "RESUMING→STOP fails for the first half of a real saved stream"),
        new(S, "sessions.resume-reordered", "§2.7, §4.3", "RESUMING→STOP fails for a real saved stream whose two halves were swapped"),

        new(PC, "precopy.temporary-end", "§4.5", "in PRE_COPY, reading to the temporary end yields ENOMSG (0 is tolerated with a warning)"),
        new(PC, "precopy.info-initial-bytes", "§4.6", "initial_bytes never grows while the stream is read (without REINIT) and is 0 at the temporary end"),
        new(PC, "precopy.info-outside-precopy", "§4.4, §4.6", "VFIO_MIG_GET_PRECOPY_INFO fails with EINVAL once the device left PRE_COPY (STOP_COPY, and after the stream ended)"),
        new(PC, "precopy.stop-copy-to-pre-copy", "§2.5", "STOP_COPY→PRE_COPY is rejected with EINVAL, the state stays STOP_COPY and the stream stays valid"),

        new(RT, "round-trip.resume", "§4.2, §4.3", "a saved stream resumes into a second instance (or the device after reset), and the resumed device re-saves an identical stream (deterministic devices) or one that resumes again"),

        new(D, "dirty.zero-ranges", "§5.1", "DMA_LOGGING_START with 0 ranges fails with EINVAL (over vfio-user: succeeds, meaning \"everything\")"),
        new(D, "dirty.too-many-ranges", "§5.1", "DMA_LOGGING_START with 257 ranges fails with E2BIG"),
        new(D, "dirty.misaligned", "§5.1", "DMA_LOGGING_START with an iova or length not a multiple of the page size fails with EINVAL"),
        new(D, "dirty.overflow", "§5.1", "DMA_LOGGING_START with iova + length beyond 2^64 fails with EOVERFLOW"),
        new(D, "dirty.overlap", "§5.1", "DMA_LOGGING_START with overlapping ranges fails with EINVAL"),
        new(D, "dirty.report-page-size", "§5.3", "DMA_LOGGING_REPORT with a page size below 4096 or not a power of two fails with EINVAL"),
        new(D, "dirty.report-overflow", "§5.3", "DMA_LOGGING_REPORT with iova + length beyond 2^64 fails with EOVERFLOW"),
        new(D, "dirty.read-and-clear", "§5.3", "with the device stopped, a second report of the same range is empty"),

        new(RB, "robustness.raw-messages", "vfio-user.md", "malformed transport messages are rejected without harming the device (transport-specific probe)"),
    ];

    /// <summary>The rule with this id.</summary>
    /// <exception cref="KeyNotFoundException">No such rule.</exception>
    public static ConformanceRule Get(string id)
        => Rules.FirstOrDefault(r => r.Id == id) ?? throw new KeyNotFoundException($"no conformance rule '{id}'");
}
