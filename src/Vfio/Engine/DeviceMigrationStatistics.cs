using Vfio.Migration;

namespace Vfio.Engine;

/// <summary>Per-device figures of a finished migration.</summary>
/// <param name="Index">Position in the device list (and device index in the stream).</param>
/// <param name="Name">The device's name on this side.</param>
/// <param name="Capabilities">Its migration capabilities.</param>
/// <param name="PreCopyBytes">Device bytes moved during pre-copy.</param>
/// <param name="StopCopyBytes">Device bytes moved during stop-copy.</param>
/// <param name="InitialDataAcknowledged">Whether the destination acknowledged the initial bytes before switchover.</param>
public sealed record DeviceMigrationStatistics(int Index, string Name, VfioMigrationFlags Capabilities, long PreCopyBytes, long StopCopyBytes, bool InitialDataAcknowledged)
{
    /// <summary>All device bytes moved.</summary>
    public long TotalBytes => PreCopyBytes + StopCopyBytes;
}
