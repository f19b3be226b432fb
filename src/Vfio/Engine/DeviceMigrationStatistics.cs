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
    /// <summary>Source side: the device accepted the MIG_PRECOPY_INFOv2 opt-in, so its REINIT flags were honoured (spec §4.7).</summary>
    public bool PrecopyInfoV2 { get; init; }

    /// <summary>Source side: how many times the device reported REINIT (new initial data) during pre-copy.</summary>
    public int Reinits { get; init; }

    /// <summary>All device bytes moved.</summary>
    public long TotalBytes => PreCopyBytes + StopCopyBytes;
}
