namespace Vfio.Engine;

/// <summary>The outcome of a migration, decided once by its destination (docs/commit-protocol.md).</summary>
public enum MigrationDecision : byte
{
    /// <summary>The destination owns the state: it runs, the source never does again.</summary>
    Committed = 1,

    /// <summary>The destination never runs this migration's state; the source may (and should) run again.</summary>
    Aborted = 2,
}
