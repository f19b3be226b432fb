namespace Vfio.User.Protocol;

/// <summary>vfio-user command numbers (spec §5).</summary>
public enum VfioUserCommand : ushort
{
    /// <summary>Reserved.</summary>
    None = 0,
    /// <summary>VERSION: negotiation, first message.</summary>
    Version = 1,
    /// <summary>DMA_MAP.</summary>
    DmaMap = 2,
    /// <summary>DMA_UNMAP.</summary>
    DmaUnmap = 3,
    /// <summary>DEVICE_GET_INFO.</summary>
    DeviceGetInfo = 4,
    /// <summary>DEVICE_GET_REGION_INFO.</summary>
    DeviceGetRegionInfo = 5,
    /// <summary>DEVICE_GET_REGION_IO_FDS.</summary>
    DeviceGetRegionIoFds = 6,
    /// <summary>DEVICE_GET_IRQ_INFO.</summary>
    DeviceGetIrqInfo = 7,
    /// <summary>DEVICE_SET_IRQS.</summary>
    DeviceSetIrqs = 8,
    /// <summary>REGION_READ.</summary>
    RegionRead = 9,
    /// <summary>REGION_WRITE.</summary>
    RegionWrite = 10,
    /// <summary>DMA_READ (server to client).</summary>
    DmaRead = 11,
    /// <summary>DMA_WRITE (server to client).</summary>
    DmaWrite = 12,
    /// <summary>DEVICE_RESET.</summary>
    DeviceReset = 13,
    /// <summary>Retired migration-v1 DIRTY_PAGES.</summary>
    DirtyPagesRetired = 14,
    /// <summary>REGION_WRITE_MULTI (not implemented; never advertised).</summary>
    RegionWriteMulti = 15,
    /// <summary>DEVICE_FEATURE.</summary>
    DeviceFeature = 16,
    /// <summary>MIG_DATA_READ.</summary>
    MigDataRead = 17,
    /// <summary>MIG_DATA_WRITE.</summary>
    MigDataWrite = 18,
}
