using System.Globalization;

namespace Vfio.Engine;

/// <summary>
/// A migration failed (a <see cref="VfioException"/> with the side, phase and device added). Says where (side, phase, device) and why (errno and words); the inner exception
/// is the original <see cref="VfioException"/> when there is one. When this is thrown the source devices
/// are back in RUNNING (or were reset) and the destination devices were reset; <see cref="RecoveryErrors"/>
/// lists any device that could not be recovered.
/// </summary>
public sealed class MigrationException : VfioException
{
    /// <summary>Creates the exception.</summary>
    public MigrationException(MigrationSide side, MigrationPhase phase, int deviceIndex, string? deviceName, Errno errno, string detail, Exception? inner = null, ConvergenceReport? convergence = null)
        : base(errno, "migrate", detail, Format(side, phase, deviceIndex, deviceName, errno, detail), inner)
    {
        Side = side;
        Phase = phase;
        DeviceIndex = deviceIndex;
        DeviceName = deviceName;
        Convergence = convergence;
    }

    /// <summary>Creates the exception.</summary>
    public MigrationException()
        : this(MigrationSide.Source, MigrationPhase.Setup, -1, null, Errno.EIO, "migration failed")
    {
    }

    /// <summary>Creates the exception.</summary>
    public MigrationException(string message)
        : this(MigrationSide.Source, MigrationPhase.Setup, -1, null, Errno.EIO, message)
    {
    }

    /// <summary>Creates the exception.</summary>
    public MigrationException(string message, Exception innerException)
        : this(MigrationSide.Source, MigrationPhase.Setup, -1, null, Errno.EIO, message, innerException)
    {
    }

    /// <summary>The side whose device, stream or decision failed.</summary>
    public MigrationSide Side { get; }

    /// <summary>The phase the failure happened in.</summary>
    public MigrationPhase Phase { get; }

    /// <summary>The device index, or −1 when no single device is to blame.</summary>
    public int DeviceIndex { get; }

    /// <summary>The device's name, if a device is to blame.</summary>
    public string? DeviceName { get; }

    /// <summary>The convergence figures when pre-copy did not converge (errno ETIMEDOUT).</summary>
    public ConvergenceReport? Convergence { get; }

    /// <summary>
    /// True when the migration ended <em>held</em>: its outcome is unknown here (or decided committed but the
    /// destination could not start), so this side's devices were neither restarted nor reset and keep the state;
    /// <c>vfio-mig resolve</c> with <see cref="MigrationId"/> finishes it (docs/commit-protocol.md).
    /// </summary>
    public bool Held { get; internal set; }

    /// <summary>The migration's id (<see cref="Guid.Empty"/> when it failed before one was known).</summary>
    public Guid MigrationId { get; internal set; }

    /// <summary>Devices that could not be put back after the failure (empty when recovery succeeded).</summary>
    public IReadOnlyList<string> RecoveryErrors { get; internal set; } = [];

    /// <summary>What was measured before the failure.</summary>
    public MigrationStatistics? Statistics { get; internal set; }

    private static string Format(MigrationSide side, MigrationPhase phase, int deviceIndex, string? deviceName, Errno errno, string detail)
    {
        string where = side == MigrationSide.Source ? "source" : "destination";
        string device = deviceIndex >= 0
            ? string.Create(CultureInfo.InvariantCulture, $" device {deviceIndex}{(deviceName is null ? "" : " (" + deviceName + ")")}")
            : "";
        return $"migration failed in {PhaseName(phase)} on the {where}{device}: {VfioException.NameOf(errno)}: {detail}";
    }

    /// <summary>The phase in words, as used in messages.</summary>
    public static string PhaseName(MigrationPhase phase) => phase switch
    {
        MigrationPhase.Setup => "setup",
        MigrationPhase.PreCopy => "pre-copy",
        MigrationPhase.Switchover => "switchover",
        MigrationPhase.StopCopy => "stop-copy",
        MigrationPhase.Validate => "validation (RESUMING>STOP)",
        MigrationPhase.Start => "start (to RUNNING)",
        MigrationPhase.Cleanup => "cleanup",
        MigrationPhase.Completed => "completion",
        _ => "phase " + ((byte)phase).ToString(CultureInfo.InvariantCulture),
    };
}
