namespace Vfio.Uapi;

/// <summary>
/// VFIO ioctl request numbers (spec §1.5). Every VFIO ioctl is <c>_IO(';', 100 + n)</c>: no size or
/// direction bits, because the size travels in <c>argsz</c>.
/// </summary>
internal static class VfioIoctl
{
    /// <summary>VFIO_TYPE = ';'.</summary>
    public const uint VfioType = 0x3B;

    /// <summary>VFIO_BASE.</summary>
    public const uint VfioBase = 100;

    /// <summary>The expansion of the C macro <c>_IO(type, nr)</c>.</summary>
    public static uint Io(uint type, uint nr) => (type << 8) | nr;

    /// <summary>The request number of VFIO ioctl n.</summary>
    public static uint Vfio(uint n) => Io(VfioType, VfioBase + n);

#pragma warning disable CA1707 // kernel spellings, greppable against include/uapi/linux/vfio.h
    /// <summary>VFIO_GET_API_VERSION (container).</summary>
    public const uint VFIO_GET_API_VERSION = 0x3B64;
    /// <summary>VFIO_CHECK_EXTENSION (container).</summary>
    public const uint VFIO_CHECK_EXTENSION = 0x3B65;
    /// <summary>VFIO_SET_IOMMU (container).</summary>
    public const uint VFIO_SET_IOMMU = 0x3B66;
    /// <summary>VFIO_GROUP_GET_STATUS (group).</summary>
    public const uint VFIO_GROUP_GET_STATUS = 0x3B67;
    /// <summary>VFIO_GROUP_SET_CONTAINER (group).</summary>
    public const uint VFIO_GROUP_SET_CONTAINER = 0x3B68;
    /// <summary>VFIO_GROUP_UNSET_CONTAINER (group).</summary>
    public const uint VFIO_GROUP_UNSET_CONTAINER = 0x3B69;
    /// <summary>VFIO_GROUP_GET_DEVICE_FD (group).</summary>
    public const uint VFIO_GROUP_GET_DEVICE_FD = 0x3B6A;
    /// <summary>VFIO_DEVICE_GET_INFO.</summary>
    public const uint VFIO_DEVICE_GET_INFO = 0x3B6B;
    /// <summary>VFIO_DEVICE_GET_REGION_INFO.</summary>
    public const uint VFIO_DEVICE_GET_REGION_INFO = 0x3B6C;
    /// <summary>VFIO_DEVICE_GET_IRQ_INFO.</summary>
    public const uint VFIO_DEVICE_GET_IRQ_INFO = 0x3B6D;
    /// <summary>VFIO_DEVICE_SET_IRQS.</summary>
    public const uint VFIO_DEVICE_SET_IRQS = 0x3B6E;
    /// <summary>VFIO_DEVICE_RESET.</summary>
    public const uint VFIO_DEVICE_RESET = 0x3B6F;
    /// <summary>VFIO_DEVICE_GET_PCI_HOT_RESET_INFO.</summary>
    public const uint VFIO_DEVICE_GET_PCI_HOT_RESET_INFO = 0x3B70;
    /// <summary>VFIO_DEVICE_PCI_HOT_RESET.</summary>
    public const uint VFIO_DEVICE_PCI_HOT_RESET = 0x3B71;
    /// <summary>VFIO_DEVICE_QUERY_GFX_PLANE.</summary>
    public const uint VFIO_DEVICE_QUERY_GFX_PLANE = 0x3B72;
    /// <summary>VFIO_DEVICE_GET_GFX_DMABUF.</summary>
    public const uint VFIO_DEVICE_GET_GFX_DMABUF = 0x3B73;
    /// <summary>VFIO_DEVICE_IOEVENTFD.</summary>
    public const uint VFIO_DEVICE_IOEVENTFD = 0x3B74;
    /// <summary>VFIO_DEVICE_FEATURE.</summary>
    public const uint VFIO_DEVICE_FEATURE = 0x3B75;
    /// <summary>VFIO_DEVICE_BIND_IOMMUFD (cdev).</summary>
    public const uint VFIO_DEVICE_BIND_IOMMUFD = 0x3B76;
    /// <summary>VFIO_DEVICE_ATTACH_IOMMUFD_PT (cdev).</summary>
    public const uint VFIO_DEVICE_ATTACH_IOMMUFD_PT = 0x3B77;
    /// <summary>VFIO_DEVICE_DETACH_IOMMUFD_PT (cdev).</summary>
    public const uint VFIO_DEVICE_DETACH_IOMMUFD_PT = 0x3B78;
    /// <summary>VFIO_MIG_GET_PRECOPY_INFO, issued on the saving data fd.</summary>
    public const uint VFIO_MIG_GET_PRECOPY_INFO = 0x3B79;
    /// <summary>VFIO_IOMMU_GET_INFO (container, type1).</summary>
    public const uint VFIO_IOMMU_GET_INFO = 0x3B70;
    /// <summary>VFIO_IOMMU_MAP_DMA (container, type1).</summary>
    public const uint VFIO_IOMMU_MAP_DMA = 0x3B71;
    /// <summary>VFIO_IOMMU_UNMAP_DMA (container, type1).</summary>
    public const uint VFIO_IOMMU_UNMAP_DMA = 0x3B72;
    /// <summary>VFIO_IOMMU_ENABLE (container, type1/SPAPR; same number as VFIO_DEVICE_GET_GFX_DMABUF on a device fd).</summary>
    public const uint VFIO_IOMMU_ENABLE = 0x3B73;
    /// <summary>VFIO_IOMMU_DISABLE (container; same number as VFIO_DEVICE_IOEVENTFD on a device fd).</summary>
    public const uint VFIO_IOMMU_DISABLE = 0x3B74;
    /// <summary>VFIO_IOMMU_DIRTY_PAGES (container, type1; same number as VFIO_DEVICE_FEATURE on a device fd).</summary>
    public const uint VFIO_IOMMU_DIRTY_PAGES = 0x3B75;
    /// <summary>VFIO_IOMMU_SPAPR_REGISTER_MEMORY (container, SPAPR).</summary>
    public const uint VFIO_IOMMU_SPAPR_REGISTER_MEMORY = 0x3B75;
    /// <summary>VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY (container, SPAPR).</summary>
    public const uint VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY = 0x3B76;
    /// <summary>VFIO_IOMMU_SPAPR_TCE_CREATE (container, SPAPR).</summary>
    public const uint VFIO_IOMMU_SPAPR_TCE_CREATE = 0x3B77;
    /// <summary>VFIO_IOMMU_SPAPR_TCE_REMOVE (container, SPAPR).</summary>
    public const uint VFIO_IOMMU_SPAPR_TCE_REMOVE = 0x3B78;
    /// <summary>VFIO_EEH_PE_OP (container, SPAPR; same number as VFIO_MIG_GET_PRECOPY_INFO on a data fd).</summary>
    public const uint VFIO_EEH_PE_OP = 0x3B79;
    /// <summary>VFIO_API_VERSION returned by VFIO_GET_API_VERSION.</summary>
    public const int VFIO_API_VERSION = 0;
    /// <summary>VFIO_TYPE1_IOMMU extension / IOMMU type.</summary>
    public const int VFIO_TYPE1_IOMMU = 1;
    /// <summary>VFIO_TYPE1v2_IOMMU extension / IOMMU type.</summary>
    public const int VFIO_TYPE1v2_IOMMU = 3;
#pragma warning restore CA1707
}
