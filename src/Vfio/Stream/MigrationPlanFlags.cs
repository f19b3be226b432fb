namespace Vfio.Stream;

/// <summary>What the source will do with one device, announced in its <see cref="MigrationFrameType.Setup"/> frame.</summary>
[Flags]
internal enum MigrationPlanFlags : uint
{
    /// <summary>Stop-copy only.</summary>
    None = 0,

    /// <summary>The device is pre-copied (PRE_COPY data and an init-data-sent marker will follow).</summary>
    PreCopy = 0x1,

    /// <summary>The migration quiesces devices through the P2P states (RUNNING_P2P / PRE_COPY_P2P).</summary>
    P2P = 0x2,
}
