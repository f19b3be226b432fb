namespace Vfio.Engine;

/// <summary>Where one side of a migration stands, as recorded in its <see cref="MigrationRecord"/>.</summary>
public enum MigrationRecordStatus : byte
{
    /// <summary>Running, or interrupted before it ended (a killed process leaves this): unresolved.</summary>
    Begun = 1,

    /// <summary>Ended committed on this side (destination running, or source stopped for good).</summary>
    Completed = 2,

    /// <summary>Ended aborted on this side (source running again, or destination reset).</summary>
    Aborted = 3,

    /// <summary>Ended with the outcome unknown or not applied: neither copy runs; <c>vfio-mig resolve</c> finishes it. Unresolved.</summary>
    Held = 4,
}
