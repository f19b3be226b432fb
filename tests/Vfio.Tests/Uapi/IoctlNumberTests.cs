using Vfio.Uapi;

namespace Vfio.Tests.Uapi;

// spec §1.5: every VFIO ioctl is _IO(';', 100 + n) = (0x3B << 8) | (100 + n).
public class IoctlNumberTests
{
    public static TheoryData<uint, string, uint, uint> DeviceTable => new()
    {
        { 0, "VFIO_GET_API_VERSION", VfioIoctl.VFIO_GET_API_VERSION, 0x3B64 },
        { 1, "VFIO_CHECK_EXTENSION", VfioIoctl.VFIO_CHECK_EXTENSION, 0x3B65 },
        { 2, "VFIO_SET_IOMMU", VfioIoctl.VFIO_SET_IOMMU, 0x3B66 },
        { 3, "VFIO_GROUP_GET_STATUS", VfioIoctl.VFIO_GROUP_GET_STATUS, 0x3B67 },
        { 4, "VFIO_GROUP_SET_CONTAINER", VfioIoctl.VFIO_GROUP_SET_CONTAINER, 0x3B68 },
        { 5, "VFIO_GROUP_UNSET_CONTAINER", VfioIoctl.VFIO_GROUP_UNSET_CONTAINER, 0x3B69 },
        { 6, "VFIO_GROUP_GET_DEVICE_FD", VfioIoctl.VFIO_GROUP_GET_DEVICE_FD, 0x3B6A },
        { 7, "VFIO_DEVICE_GET_INFO", VfioIoctl.VFIO_DEVICE_GET_INFO, 0x3B6B },
        { 8, "VFIO_DEVICE_GET_REGION_INFO", VfioIoctl.VFIO_DEVICE_GET_REGION_INFO, 0x3B6C },
        { 9, "VFIO_DEVICE_GET_IRQ_INFO", VfioIoctl.VFIO_DEVICE_GET_IRQ_INFO, 0x3B6D },
        { 10, "VFIO_DEVICE_SET_IRQS", VfioIoctl.VFIO_DEVICE_SET_IRQS, 0x3B6E },
        { 11, "VFIO_DEVICE_RESET", VfioIoctl.VFIO_DEVICE_RESET, 0x3B6F },
        { 12, "VFIO_DEVICE_GET_PCI_HOT_RESET_INFO", VfioIoctl.VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, 0x3B70 },
        { 13, "VFIO_DEVICE_PCI_HOT_RESET", VfioIoctl.VFIO_DEVICE_PCI_HOT_RESET, 0x3B71 },
        { 14, "VFIO_DEVICE_QUERY_GFX_PLANE", VfioIoctl.VFIO_DEVICE_QUERY_GFX_PLANE, 0x3B72 },
        { 15, "VFIO_DEVICE_GET_GFX_DMABUF", VfioIoctl.VFIO_DEVICE_GET_GFX_DMABUF, 0x3B73 },
        { 16, "VFIO_DEVICE_IOEVENTFD", VfioIoctl.VFIO_DEVICE_IOEVENTFD, 0x3B74 },
        { 17, "VFIO_DEVICE_FEATURE", VfioIoctl.VFIO_DEVICE_FEATURE, 0x3B75 },
        { 18, "VFIO_DEVICE_BIND_IOMMUFD", VfioIoctl.VFIO_DEVICE_BIND_IOMMUFD, 0x3B76 },
        { 19, "VFIO_DEVICE_ATTACH_IOMMUFD_PT", VfioIoctl.VFIO_DEVICE_ATTACH_IOMMUFD_PT, 0x3B77 },
        { 20, "VFIO_DEVICE_DETACH_IOMMUFD_PT", VfioIoctl.VFIO_DEVICE_DETACH_IOMMUFD_PT, 0x3B78 },
        { 21, "VFIO_MIG_GET_PRECOPY_INFO", VfioIoctl.VFIO_MIG_GET_PRECOPY_INFO, 0x3B79 },
    };

    // spec §1.5 "numeric collisions that exist by design": the container ioctls reuse 0x3B70–0x3B79.
    public static TheoryData<uint, string, uint, uint> ContainerTable => new()
    {
        { 12, "VFIO_IOMMU_GET_INFO", VfioIoctl.VFIO_IOMMU_GET_INFO, 0x3B70 },
        { 13, "VFIO_IOMMU_MAP_DMA", VfioIoctl.VFIO_IOMMU_MAP_DMA, 0x3B71 },
        { 14, "VFIO_IOMMU_UNMAP_DMA", VfioIoctl.VFIO_IOMMU_UNMAP_DMA, 0x3B72 },
        { 15, "VFIO_IOMMU_ENABLE", VfioIoctl.VFIO_IOMMU_ENABLE, 0x3B73 },
        { 16, "VFIO_IOMMU_DISABLE", VfioIoctl.VFIO_IOMMU_DISABLE, 0x3B74 },
        { 17, "VFIO_IOMMU_DIRTY_PAGES", VfioIoctl.VFIO_IOMMU_DIRTY_PAGES, 0x3B75 },
        { 17, "VFIO_IOMMU_SPAPR_REGISTER_MEMORY", VfioIoctl.VFIO_IOMMU_SPAPR_REGISTER_MEMORY, 0x3B75 },
        { 18, "VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY", VfioIoctl.VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY, 0x3B76 },
        { 19, "VFIO_IOMMU_SPAPR_TCE_CREATE", VfioIoctl.VFIO_IOMMU_SPAPR_TCE_CREATE, 0x3B77 },
        { 20, "VFIO_IOMMU_SPAPR_TCE_REMOVE", VfioIoctl.VFIO_IOMMU_SPAPR_TCE_REMOVE, 0x3B78 },
        { 21, "VFIO_EEH_PE_OP", VfioIoctl.VFIO_EEH_PE_OP, 0x3B79 },
    };

    [Theory]
    [MemberData(nameof(DeviceTable))]
    [MemberData(nameof(ContainerTable))]
    public void IoctlNumber_IsTheSpecValue_AndTheIoExpansion_spec_1_5(uint n, string name, uint constant, uint expected)
    {
        Assert.Equal(expected, constant);
        Assert.Equal(expected, VfioIoctl.Vfio(n));
        Assert.Equal(expected, VfioIoctl.Io(0x3B, 100 + n));
        Assert.False(string.IsNullOrEmpty(name));
    }

    [Fact]
    public void Io_IsTheCMacroExpansion_NoSizeOrDirectionBits_spec_1_5()
    {
        Assert.Equal(0x3Bu, VfioIoctl.VfioType);
        Assert.Equal((uint)';', VfioIoctl.VfioType);
        Assert.Equal(100u, VfioIoctl.VfioBase);
        // _IOC(dir=0, type, nr, size=0) = (dir << 30) | (size << 16) | (type << 8) | nr on x86_64.
        for (uint nr = 0; nr < 256; nr++)
            Assert.Equal((0u << 30) | (0u << 16) | (0x3Bu << 8) | nr, VfioIoctl.Io(0x3B, nr));
        Assert.Equal(0x3B6Fu, VfioIoctl.Vfio(11));
        Assert.Equal(0x3B75u, VfioIoctl.Vfio(17));
        Assert.Equal(0x3B79u, VfioIoctl.Vfio(21));
    }
}
