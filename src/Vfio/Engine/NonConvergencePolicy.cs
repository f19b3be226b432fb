namespace Vfio.Engine;

/// <summary>What the source does when pre-copy hits <see cref="MigrationOptions.MaxRounds"/> or <see cref="MigrationOptions.MaxPreCopyTime"/> before converging.</summary>
public enum NonConvergencePolicy
{
    /// <summary>
    /// Abort with a <see cref="MigrationException"/> (ETIMEDOUT) carrying a <see cref="ConvergenceReport"/>;
    /// the sources go back to RUNNING. The default: never exceed the downtime limit silently.
    /// </summary>
    Fail,

    /// <summary>Switch over anyway and accept a downtime above the limit (reported in the statistics).</summary>
    ForceSwitchover,
}
