using System.Collections.Frozen;

namespace Vfio.Migration;

/// <summary>
/// The kernel's migration state machine: <c>vfio_from_fsm_table</c>, the supported-state predicate and
/// <c>vfio_mig_get_next_state()</c> with the skip rule and the 2026 blocked-arc fix (spec §2.1–§2.4).
/// </summary>
public static class MigrationStateMachine
{
    /// <summary>Number of states (VFIO_DEVICE_STATE_NR); any value at or above it is invalid.</summary>
    public const uint StateCount = 8;

    private const VfioMigrationState E = VfioMigrationState.Error;
    private const VfioMigrationState S = VfioMigrationState.Stop;
    private const VfioMigrationState R = VfioMigrationState.Running;
    private const VfioMigrationState SC = VfioMigrationState.StopCopy;
    private const VfioMigrationState RS = VfioMigrationState.Resuming;
    private const VfioMigrationState RP = VfioMigrationState.RunningP2P;
    private const VfioMigrationState PC = VfioMigrationState.PreCopy;
    private const VfioMigrationState PP = VfioMigrationState.PreCopyP2P;

    // Row = current state, column = target; cell = next state for a device that supports everything.
    // ERROR in a cell is the sentinel for "no way" (spec §2.2).
    private static readonly VfioMigrationState[][] s_table =
    [
        /* ERROR        */ [E, E, E, E, E, E, E, E],
        /* STOP         */ [E, S, RP, SC, RS, RP, RP, RP],
        /* RUNNING      */ [E, RP, R, RP, RP, RP, PC, RP],
        /* STOP_COPY    */ [E, S, S, SC, S, S, E, E],
        /* RESUMING     */ [E, S, S, S, RS, S, S, S],
        /* RUNNING_P2P  */ [E, S, R, S, S, RP, R, PP],
        /* PRE_COPY     */ [E, R, R, PP, R, R, PC, PP],
        /* PRE_COPY_P2P */ [E, RP, RP, SC, RP, RP, PC, PP],
    ];

    private static readonly string[] s_names =
        ["ERROR", "STOP", "RUNNING", "STOP_COPY", "RESUMING", "RUNNING_P2P", "PRE_COPY", "PRE_COPY_P2P"];

    private static readonly FrozenDictionary<string, VfioMigrationState> s_byName =
        Enumerable.Range(0, s_names.Length).ToFrozenDictionary(i => s_names[i], i => (VfioMigrationState)i, StringComparer.OrdinalIgnoreCase);

    /// <summary>The capability flags a state needs (spec §2.1); ERROR needs all bits, so it is never supported.</summary>
    public static ulong RequiredFlags(VfioMigrationState state) => state switch
    {
        VfioMigrationState.Stop or VfioMigrationState.Running or VfioMigrationState.StopCopy or VfioMigrationState.Resuming => 0x1,
        VfioMigrationState.RunningP2P => 0x3,
        VfioMigrationState.PreCopy => 0x5,
        VfioMigrationState.PreCopyP2P => 0x7,
        _ => 0xFFFFFFFF,
    };

    /// <summary>True when <paramref name="state"/> is a valid value (below <see cref="StateCount"/>).</summary>
    public static bool IsValid(VfioMigrationState state) => (uint)state < StateCount;

    /// <summary>The supported-state predicate of spec §2.1.</summary>
    public static bool IsSupported(VfioMigrationState state, VfioMigrationFlags caps)
    {
        // ERROR needs every bit, so it is never supported; test it explicitly because caps is 64 bits wide
        // and need(ERROR) only 32, which would make ERROR "supported" for caps with all low 32 bits set.
        if (!IsValid(state) || state == VfioMigrationState.Error)
            return false;
        ulong need = RequiredFlags(state);
        return ((ulong)caps & need) == need;
    }

    /// <summary>The kernel's state name without prefix, e.g. <c>STOP_COPY</c>.</summary>
    public static string Name(VfioMigrationState state)
        => IsValid(state) ? s_names[(int)state] : "STATE_" + ((uint)state).ToString(System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>Parses a kernel state name (case-insensitive) or its numeric value.</summary>
    public static bool TryParse(string text, out VfioMigrationState state)
    {
        ArgumentNullException.ThrowIfNull(text);
        if (s_byName.TryGetValue(text.Trim(), out state))
            return true;
        if (uint.TryParse(text, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out uint raw) && raw < StateCount)
        {
            state = (VfioMigrationState)raw;
            return true;
        }
        state = default;
        return false;
    }

    /// <summary>
    /// <c>vfio_mig_get_next_state()</c>: the next single arc from <paramref name="current"/> toward
    /// <paramref name="target"/>, or <see cref="Errno.EINVAL"/> (spec §2.3).
    /// </summary>
    public static Errno TryGetNextState(VfioMigrationState current, VfioMigrationState target, VfioMigrationFlags caps, out VfioMigrationState next)
    {
        next = VfioMigrationState.Error;
        if (!IsSupported(current, caps) || !IsSupported(target, caps))
            return Errno.EINVAL;

        next = s_table[(int)current][(int)target];
        // Skip states the device lacks; stop at the ERROR sentinel so a blocked arc cannot loop (the 2026 fix).
        while (next != VfioMigrationState.Error && !IsSupported(next, caps))
            next = s_table[(int)next][(int)target];

        return next == VfioMigrationState.Error ? Errno.EINVAL : Errno.None;
    }

    /// <summary>The whole walk the kernel performs for a request, encoded as in <c>fsm-paths.csv</c>.</summary>
    public static MigrationPath GetPath(VfioMigrationState from, VfioMigrationState to, VfioMigrationFlags caps)
    {
        if (from == VfioMigrationState.Error)
            return to == VfioMigrationState.Error
                ? new MigrationPath(MigrationPathKind.Same, [from])
                : new MigrationPath(MigrationPathKind.RejectedInError, []);
        if (!IsSupported(from, caps))
            return new MigrationPath(MigrationPathKind.NotApplicable, []);
        if (from == to)
            return new MigrationPath(MigrationPathKind.Same, [from]);

        var states = new List<VfioMigrationState> { from };
        var current = from;
        while (current != to)
        {
            if (TryGetNextState(current, to, caps, out var next) != Errno.None)
            {
                // The table guarantees that only the first step can fail; anything else would be a table bug.
                return states.Count == 1
                    ? new MigrationPath(MigrationPathKind.Rejected, [])
                    : throw new InvalidOperationException($"FSM dead end at {Name(current)} toward {Name(to)}");
            }
            states.Add(next);
            current = next;
            if (states.Count > StateCount)
                throw new InvalidOperationException($"FSM cycle from {Name(from)} toward {Name(to)}");
        }
        return new MigrationPath(MigrationPathKind.Arcs, states);
    }

    /// <summary>True when the kernel can hand this single arc to a driver with these caps (spec §2.6).</summary>
    public static bool IsLegalArc(MigrationArc arc, VfioMigrationFlags caps)
        => arc.From != arc.To
           && TryGetNextState(arc.From, arc.To, caps, out var next) == Errno.None
           && next == arc.To;

    /// <summary>Every legal single arc for the caps, in (from, to) enum order (spec §2.6).</summary>
    public static IReadOnlyList<MigrationArc> LegalArcs(VfioMigrationFlags caps)
    {
        var arcs = new List<MigrationArc>();
        for (uint f = 0; f < StateCount; f++)
        {
            for (uint t = 0; t < StateCount; t++)
            {
                var arc = new MigrationArc((VfioMigrationState)f, (VfioMigrationState)t);
                if (IsLegalArc(arc, caps))
                    arcs.Add(arc);
            }
        }
        return arcs;
    }

    /// <summary>True for the saving group {PRE_COPY, PRE_COPY_P2P, STOP_COPY}.</summary>
    public static bool IsSaving(VfioMigrationState state)
        => state is VfioMigrationState.StopCopy or VfioMigrationState.PreCopy or VfioMigrationState.PreCopyP2P;

    /// <summary>True for PRE_COPY and PRE_COPY_P2P.</summary>
    public static bool IsPreCopy(VfioMigrationState state)
        => state is VfioMigrationState.PreCopy or VfioMigrationState.PreCopyP2P;

    /// <summary>What the arc does to the data stream (spec §2.7).</summary>
    public static DataSessionEffect GetSessionEffect(MigrationArc arc) => (arc.From, arc.To) switch
    {
        (S, SC) or (R, PC) or (RP, PP) => DataSessionEffect.OpensSaving,
        (S, RS) => DataSessionEffect.OpensResuming,
        (PC, PP) or (PP, PC) or (PP, SC) or (PC, SC) => DataSessionEffect.ContinuesSaving,
        (SC, S) or (PC, R) or (PP, RP) or (RS, S) => DataSessionEffect.EndsSession,
        _ => DataSessionEffect.None,
    };

    /// <summary>Parses caps written as hex (<c>0x7</c>) or decimal.</summary>
    public static bool TryParseCaps(string text, out VfioMigrationFlags caps)
    {
        ArgumentNullException.ThrowIfNull(text);
        text = text.Trim();
        bool ok = text.StartsWith("0x", StringComparison.OrdinalIgnoreCase)
            ? ulong.TryParse(text.AsSpan(2), System.Globalization.NumberStyles.AllowHexSpecifier, System.Globalization.CultureInfo.InvariantCulture, out ulong v)
            : ulong.TryParse(text, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out v);
        caps = (VfioMigrationFlags)v;
        return ok;
    }

    /// <summary>Caps as the spec writes them, e.g. <c>0x7</c>.</summary>
    public static string FormatCaps(VfioMigrationFlags caps) => "0x" + ((ulong)caps).ToString("x", System.Globalization.CultureInfo.InvariantCulture);
}
