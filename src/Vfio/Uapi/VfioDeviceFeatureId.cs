namespace Vfio.Uapi;

/// <summary>VFIO_DEVICE_FEATURE ids, the low 16 bits of <c>vfio_device_feature.flags</c> (spec §1.3).</summary>
internal enum VfioDeviceFeatureId : ushort
{
    /// <summary>VFIO_DEVICE_FEATURE_PCI_VF_TOKEN.</summary>
    PciVfToken = 0,
    /// <summary>VFIO_DEVICE_FEATURE_MIGRATION (GET: capability flags).</summary>
    Migration = 1,
    /// <summary>VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE (GET/SET device_state).</summary>
    MigDeviceState = 2,
    /// <summary>VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY.</summary>
    LowPowerEntry = 3,
    /// <summary>VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP.</summary>
    LowPowerEntryWithWakeup = 4,
    /// <summary>VFIO_DEVICE_FEATURE_LOW_POWER_EXIT.</summary>
    LowPowerExit = 5,
    /// <summary>VFIO_DEVICE_FEATURE_DMA_LOGGING_START.</summary>
    DmaLoggingStart = 6,
    /// <summary>VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP.</summary>
    DmaLoggingStop = 7,
    /// <summary>VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT.</summary>
    DmaLoggingReport = 8,
    /// <summary>VFIO_DEVICE_FEATURE_MIG_DATA_SIZE (GET: stop-copy size estimate).</summary>
    MigDataSize = 9,
    /// <summary>VFIO_DEVICE_FEATURE_BUS_MASTER.</summary>
    BusMaster = 10,
    /// <summary>VFIO_DEVICE_FEATURE_DMA_BUF.</summary>
    DmaBuf = 11,
    /// <summary>VFIO_DEVICE_FEATURE_MIG_PRECOPY_INFOv2 (SET: opt in to REINIT reporting, Linux 7.1).</summary>
    MigPrecopyInfoV2 = 12,
}
