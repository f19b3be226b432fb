namespace Vfio.Migration;

/// <summary>How the kernel answers one (caps, from, to) request (spec §2.8 encoding).</summary>
public enum MigrationPathKind
{
    /// <summary>One or more arcs are walked.</summary>
    Arcs,
    /// <summary>The current state was requested: success, no arcs, no stream.</summary>
    Same,
    /// <summary>Rejected before any arc with EINVAL; state unchanged.</summary>
    Rejected,
    /// <summary>The device is in ERROR: EINVAL with a kernel WARN.</summary>
    RejectedInError,
    /// <summary>The from-state is not supported with these caps, so the device can never be in it.</summary>
    NotApplicable,
}

/// <summary>The result of <see cref="MigrationStateMachine.GetPath"/>: the states walked or the error.</summary>
public sealed class MigrationPath
{
    internal MigrationPath(MigrationPathKind kind, IReadOnlyList<VfioMigrationState> states)
    {
        Kind = kind;
        States = states;
    }

    /// <summary>What kind of answer this is.</summary>
    public MigrationPathKind Kind { get; }

    /// <summary>The states from the current state to the target, both included (empty when rejected).</summary>
    public IReadOnlyList<VfioMigrationState> States { get; }

    /// <summary>True when the request succeeds (arcs walked, or the current state requested).</summary>
    public bool Succeeds => Kind is MigrationPathKind.Arcs or MigrationPathKind.Same;

    /// <summary>The arcs in order (empty unless <see cref="Kind"/> is <see cref="MigrationPathKind.Arcs"/>).</summary>
    public IEnumerable<MigrationArc> Arcs
    {
        get
        {
            for (int i = 1; i < States.Count; i++)
                yield return new MigrationArc(States[i - 1], States[i]);
        }
    }

    /// <summary>The path in the encoding of <c>fsm-paths.csv</c> (spec §2.8).</summary>
    public override string ToString() => Kind switch
    {
        MigrationPathKind.Arcs or MigrationPathKind.Same => string.Join('>', States.Select(MigrationStateMachine.Name)),
        MigrationPathKind.Rejected => "!EINVAL",
        MigrationPathKind.RejectedInError => "!EINVAL(WARN)",
        _ => "n/a",
    };
}
