namespace Vfio.Engine;

/// <summary>One side's record of a migration: which devices, and where that side stands.</summary>
/// <param name="Id">The migration id.</param>
/// <param name="Side">The side this record describes.</param>
/// <param name="Devices">The devices of this side, by name (the CLI uses their addresses), in index order.</param>
/// <param name="Status">Where the side stands.</param>
/// <param name="Detail">Plain words: the last thing that happened (a failure, the resolution).</param>
/// <param name="UpdatedUtc">When the record was written.</param>
public sealed record MigrationRecord(Guid Id, MigrationSide Side, IReadOnlyList<string> Devices, MigrationRecordStatus Status, string Detail, DateTimeOffset UpdatedUtc)
{
    /// <summary>True while the side still needs <c>resolve</c> (begun and never ended, or held).</summary>
    public bool IsUnresolved => Status is MigrationRecordStatus.Begun or MigrationRecordStatus.Held;
}

/// <summary>The write-once decision of a migration.</summary>
/// <param name="Id">The migration id.</param>
/// <param name="Decision">Committed or aborted.</param>
/// <param name="DecidedBy">Who decided: <c>destination</c> (the engine), <c>resolve</c>, or <c>copied</c> (the source host learned it).</param>
/// <param name="Reason">Plain words.</param>
/// <param name="DecidedUtc">When.</param>
public sealed record MigrationDecisionRecord(Guid Id, MigrationDecision Decision, string DecidedBy, string Reason, DateTimeOffset DecidedUtc);
