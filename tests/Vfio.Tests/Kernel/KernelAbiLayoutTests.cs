using System.Runtime.CompilerServices;
using Vfio.Kernel;
using Vfio.Uapi;

namespace Vfio.Tests.Kernel;

/// <summary>Sizes and offsets of the structs the kernel backend passes to ioctls (values from include/uapi/linux/vfio.h).</summary>
public class KernelAbiLayoutTests
{
    internal static int Offset<TStruct, TField>(ref TStruct s, ref TField field)
        => (int)Unsafe.ByteOffset(ref Unsafe.As<TStruct, byte>(ref s), ref Unsafe.As<TField, byte>(ref field));

    [Fact]
    public void VfioGroupStatus_Is8Bytes_ArgszThenFlags()
    {
        var s = new VfioGroupStatusAbi();
        Assert.Equal(8, Unsafe.SizeOf<VfioGroupStatusAbi>());
        Assert.Equal(VfioGroupStatusAbi.Size, Unsafe.SizeOf<VfioGroupStatusAbi>());
        Assert.Equal(0, Offset(ref s, ref s.Argsz));
        Assert.Equal(4, Offset(ref s, ref s.Flags));
        Assert.Equal(1u, VfioGroupStatusAbi.FlagViable);
        Assert.Equal(2u, VfioGroupStatusAbi.FlagContainerSet);
    }

    [Fact]
    public void VfioDeviceInfo_Is20Bytes_UpToCapOffset()
    {
        var s = new VfioDeviceInfoAbi();
        Assert.Equal(20, Unsafe.SizeOf<VfioDeviceInfoAbi>());
        Assert.Equal(0, Offset(ref s, ref s.Argsz));
        Assert.Equal(4, Offset(ref s, ref s.Flags));
        Assert.Equal(8, Offset(ref s, ref s.NumRegions));
        Assert.Equal(12, Offset(ref s, ref s.NumIrqs));
        Assert.Equal(16, Offset(ref s, ref s.CapOffset));
    }

    [Fact]
    public void VfioRegionInfo_Is32Bytes_WithU64SizeAndOffset()
    {
        var s = new VfioRegionInfoAbi();
        Assert.Equal(32, Unsafe.SizeOf<VfioRegionInfoAbi>());
        Assert.Equal(0, Offset(ref s, ref s.Argsz));
        Assert.Equal(4, Offset(ref s, ref s.Flags));
        Assert.Equal(8, Offset(ref s, ref s.Index));
        Assert.Equal(12, Offset(ref s, ref s.CapOffset));
        Assert.Equal(16, Offset(ref s, ref s.RegionSize));
        Assert.Equal(24, Offset(ref s, ref s.Offset));
    }

    [Fact]
    public void PollFd_Is8Bytes()
    {
        var s = new Interop.Interop.PollFd();
        Assert.Equal(8, Unsafe.SizeOf<Interop.Interop.PollFd>());
        Assert.Equal(0, Offset(ref s, ref s.Fd));
        Assert.Equal(4, Offset(ref s, ref s.Events));
        Assert.Equal(6, Offset(ref s, ref s.REvents));
    }

    [Theory]
    [InlineData(0u, 0x3B64u)] // VFIO_GET_API_VERSION
    [InlineData(1u, 0x3B65u)] // VFIO_CHECK_EXTENSION
    [InlineData(2u, 0x3B66u)] // VFIO_SET_IOMMU
    [InlineData(3u, 0x3B67u)] // VFIO_GROUP_GET_STATUS
    [InlineData(4u, 0x3B68u)] // VFIO_GROUP_SET_CONTAINER
    [InlineData(6u, 0x3B6Au)] // VFIO_GROUP_GET_DEVICE_FD
    [InlineData(7u, 0x3B6Bu)] // VFIO_DEVICE_GET_INFO
    [InlineData(8u, 0x3B6Cu)] // VFIO_DEVICE_GET_REGION_INFO
    [InlineData(11u, 0x3B6Fu)] // VFIO_DEVICE_RESET
    [InlineData(17u, 0x3B75u)] // VFIO_DEVICE_FEATURE
    [InlineData(21u, 0x3B79u)] // VFIO_MIG_GET_PRECOPY_INFO
    public void RequestNumbers_AreIoOfVfioBasePlusN(uint n, uint expected)
        => Assert.Equal(expected, VfioIoctl.Vfio(n));

    [Fact]
    public void RequestConstants_TheBackendUses_MatchTheSpecTable()
    {
        Assert.Equal(0x3B64u, VfioIoctl.VFIO_GET_API_VERSION);
        Assert.Equal(0x3B65u, VfioIoctl.VFIO_CHECK_EXTENSION);
        Assert.Equal(0x3B66u, VfioIoctl.VFIO_SET_IOMMU);
        Assert.Equal(0x3B67u, VfioIoctl.VFIO_GROUP_GET_STATUS);
        Assert.Equal(0x3B68u, VfioIoctl.VFIO_GROUP_SET_CONTAINER);
        Assert.Equal(0x3B6Au, VfioIoctl.VFIO_GROUP_GET_DEVICE_FD);
        Assert.Equal(0x3B6Bu, VfioIoctl.VFIO_DEVICE_GET_INFO);
        Assert.Equal(0x3B6Cu, VfioIoctl.VFIO_DEVICE_GET_REGION_INFO);
        Assert.Equal(0x3B6Fu, VfioIoctl.VFIO_DEVICE_RESET);
        Assert.Equal(0x3B75u, VfioIoctl.VFIO_DEVICE_FEATURE);
        Assert.Equal(0x3B79u, VfioIoctl.VFIO_MIG_GET_PRECOPY_INFO);
        Assert.Equal(3, VfioIoctl.VFIO_TYPE1v2_IOMMU);
        Assert.Equal(1, VfioIoctl.VFIO_TYPE1_IOMMU);
    }

    [Fact]
    public void SetStateCallBuffer_IsTheSpecExample()
    {
        // Spec §1.8: "set STOP_COPY" = 10 00 00 00 | 02 00 02 00 | 03 00 00 00 | FF FF FF FF.
        Assert.Equal(
            new byte[] { 0x10, 0, 0, 0, 0x02, 0, 0x02, 0, 0x03, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF },
            VfioFeatureCall.SetState(Vfio.Migration.VfioMigrationState.StopCopy));
    }
}
