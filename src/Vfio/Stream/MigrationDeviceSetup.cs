using Vfio.Migration;

namespace Vfio.Stream;

/// <summary>The payload of a <see cref="MigrationFrameType.Setup"/> frame: what the destination needs to know before RESUMING.</summary>
/// <param name="Capabilities">The source device's VFIO_DEVICE_FEATURE_MIGRATION flags.</param>
/// <param name="StopCopySize">The source device's MIG_DATA_SIZE estimate at setup (0 when unknown).</param>
/// <param name="Plan">Whether the device is pre-copied and whether P2P quiescing is used.</param>
/// <param name="Name">The source device's name, for messages (at most <see cref="MigrationFrameCodec.MaxNameBytes"/> UTF-8 bytes).</param>
internal readonly record struct MigrationDeviceSetup(VfioMigrationFlags Capabilities, ulong StopCopySize, MigrationPlanFlags Plan, string Name);
