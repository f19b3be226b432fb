namespace Vfio.Migration;

/// <summary>Device migration capabilities, <c>vfio_device_feature_migration.flags</c> (spec §1.2).</summary>
[Flags]
public enum VfioMigrationFlags : ulong
{
    /// <summary>No migration capability.</summary>
    None = 0,
    /// <summary>VFIO_MIGRATION_STOP_COPY (mandatory for migration).</summary>
    StopCopy = 0x1,
    /// <summary>VFIO_MIGRATION_P2P: adds RUNNING_P2P.</summary>
    P2P = 0x2,
    /// <summary>VFIO_MIGRATION_PRE_COPY: adds PRE_COPY (and PRE_COPY_P2P with P2P).</summary>
    PreCopy = 0x4,
}
