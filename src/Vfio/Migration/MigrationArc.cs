namespace Vfio.Migration;

/// <summary>One single-step transition the kernel hands to a driver (spec §2.6).</summary>
public readonly record struct MigrationArc(VfioMigrationState From, VfioMigrationState To)
{
    /// <summary>The arc as the kernel spells it, e.g. <c>STOP&gt;STOP_COPY</c>.</summary>
    public override string ToString() => $"{MigrationStateMachine.Name(From)}>{MigrationStateMachine.Name(To)}";
}
