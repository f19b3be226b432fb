namespace Vfio.Uapi;

/// <summary>Operation bits of <c>vfio_device_feature.flags</c> (spec §1.4).</summary>
[Flags]
internal enum VfioDeviceFeatureFlags : uint
{
    /// <summary>No operation bit.</summary>
    None = 0,
    /// <summary>VFIO_DEVICE_FEATURE_MASK: the feature id.</summary>
    Mask = 0x0000FFFF,
    /// <summary>VFIO_DEVICE_FEATURE_GET.</summary>
    Get = 0x00010000,
    /// <summary>VFIO_DEVICE_FEATURE_SET.</summary>
    Set = 0x00020000,
    /// <summary>VFIO_DEVICE_FEATURE_PROBE.</summary>
    Probe = 0x00040000,
}
