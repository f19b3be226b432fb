namespace Vfio.Conformance;

/// <summary>The names of the check groups (<c>--only GROUP</c>).</summary>
public static class ConformanceGroups
{
    /// <summary>Capability and state probe; always runs.</summary>
    public const string Probe = "probe";

    /// <summary>Every (from, to) request against the kernel FSM (spec §2).</summary>
    public const string Fsm = "fsm";

    /// <summary>Data stream lifetime, end of stream, resume validation, size estimate (spec §2.7, §4).</summary>
    public const string Sessions = "sessions";

    /// <summary>PRE_COPY behaviour (spec §4.5, §4.6); needs the PRE_COPY capability.</summary>
    public const string PreCopy = "precopy";

    /// <summary>Save, resume, re-save (spec §4.2, §4.3).</summary>
    public const string RoundTrip = "round-trip";

    /// <summary>DMA logging validation and read-and-clear (spec §5).</summary>
    public const string DirtyLogging = "dirty-logging";

    /// <summary>Raw transport messages (vfio-user only, through <see cref="IRawMessageProbe"/>).</summary>
    public const string Robustness = "robustness";

    /// <summary>The selectable groups in run order (the probe always runs first).</summary>
    public static IReadOnlyList<string> Selectable { get; } = [Fsm, Sessions, PreCopy, RoundTrip, DirtyLogging, Robustness];
}
