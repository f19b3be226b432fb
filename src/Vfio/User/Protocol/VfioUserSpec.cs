namespace Vfio.User.Protocol;

/// <summary>
/// Values the vfio-user protocol itself fixes (docs/vfio-user.md): the version we speak and what a peer that does not
/// say means. Not ours to tune; our bounds on a peer are in <see cref="ProtocolLimits"/>, our choices in the options.
/// </summary>
public static class VfioUserSpec
{
    /// <summary>Protocol major version we speak.</summary>
    public const ushort VersionMajor = 0;

    /// <summary>Protocol minor version we speak (as libvfio-user).</summary>
    public const ushort VersionMinor = 2;

    /// <summary>max_data_xfer_size of a peer whose VERSION does not carry one (spec default, 1 MiB).</summary>
    public const int DefaultMaxDataTransferBytes = 1 << 20;

    /// <summary>max_msg_fds of a peer whose VERSION does not carry one (spec default).</summary>
    public const int DefaultMaxMessageFds = 1;

    /// <summary>The only dirty-bitmap page size of the migration capability (spec §4.2).</summary>
    public const int MigrationPageBytes = 4096;
}
