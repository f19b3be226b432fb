using System.Buffers.Binary;
using Vfio.Uapi;

namespace Vfio.Tests.Uapi;

// spec §1.7: struct sizes and field offsets. Each struct is encoded with a distinct value per field and
// the bytes at each documented offset are read back, so a swapped or shifted field fails the test.
public class UapiStructLayoutTests
{
    [Fact]
    public void Sizes_MatchSpec_1_7()
    {
        Assert.Equal(8, VfioDeviceFeature.Size);
        Assert.Equal(8, VfioDeviceFeatureMigration.Size);
        Assert.Equal(8, VfioDeviceFeatureMigState.Size);
        Assert.Equal(24, VfioPrecopyInfo.Size);
        Assert.Equal(24, VfioDmaLoggingControl.Size);
        Assert.Equal(16, VfioDmaLoggingRange.Size);
        Assert.Equal(32, VfioDmaLoggingReport.Size);
        Assert.Equal(8, VfioDeviceFeatureMigDataSize.Size);
    }

    [Fact]
    public void VfioDeviceFeature_ArgszAt0_FlagsAt4_spec_1_7()
    {
        var buf = Filled(VfioDeviceFeature.Size + 4);
        var v = new VfioDeviceFeature(0x11223344, 0x00020002);
        v.Encode(buf);
        Assert.Equal(0x11223344u, BinaryPrimitives.ReadUInt32LittleEndian(buf.AsSpan(0)));
        Assert.Equal(0x00020002u, BinaryPrimitives.ReadUInt32LittleEndian(buf.AsSpan(4)));
        AssertUntouched(buf, VfioDeviceFeature.Size);
        Assert.Equal(v, VfioDeviceFeature.Decode(buf));
        Assert.Equal(VfioDeviceFeatureId.MigDeviceState, v.FeatureId);
        Assert.Equal(VfioDeviceFeatureFlags.Set, v.Operations);
    }

    [Fact]
    public void VfioDeviceFeatureMigration_FlagsAt0_spec_1_7()
    {
        var buf = Filled(VfioDeviceFeatureMigration.Size + 4);
        var v = new VfioDeviceFeatureMigration(0x0102030405060708);
        v.Encode(buf);
        Assert.Equal(new byte[] { 8, 7, 6, 5, 4, 3, 2, 1 }, buf[..8]);
        AssertUntouched(buf, 8);
        Assert.Equal(v, VfioDeviceFeatureMigration.Decode(buf));
    }

    [Fact]
    public void VfioDeviceFeatureMigState_DeviceStateAt0_DataFdAt4_spec_1_7()
    {
        var buf = Filled(VfioDeviceFeatureMigState.Size + 4);
        var v = new VfioDeviceFeatureMigState(0xA1B2C3D4, -2);
        v.Encode(buf);
        Assert.Equal(0xA1B2C3D4u, BinaryPrimitives.ReadUInt32LittleEndian(buf.AsSpan(0)));
        Assert.Equal(-2, BinaryPrimitives.ReadInt32LittleEndian(buf.AsSpan(4)));
        Assert.Equal(new byte[] { 0xFE, 0xFF, 0xFF, 0xFF }, buf[4..8]);
        AssertUntouched(buf, 8);
        Assert.Equal(v, VfioDeviceFeatureMigState.Decode(buf));
    }

    [Fact]
    public void VfioPrecopyInfo_Offsets_0_4_8_16_spec_1_7()
    {
        var buf = Filled(VfioPrecopyInfo.Size + 4);
        var v = new VfioPrecopyInfo(0x11111118, 0x22222221, 0x3333333333333338, 0x4444444444444448);
        v.Encode(buf);
        Assert.Equal(0x11111118u, BinaryPrimitives.ReadUInt32LittleEndian(buf.AsSpan(0)));
        Assert.Equal(0x22222221u, BinaryPrimitives.ReadUInt32LittleEndian(buf.AsSpan(4)));
        Assert.Equal(0x3333333333333338ul, BinaryPrimitives.ReadUInt64LittleEndian(buf.AsSpan(8)));
        Assert.Equal(0x4444444444444448ul, BinaryPrimitives.ReadUInt64LittleEndian(buf.AsSpan(16)));
        AssertUntouched(buf, 24);
        Assert.Equal(v, VfioPrecopyInfo.Decode(buf));
        Assert.Equal(0x1u, VfioPrecopyInfo.FlagReinit); // spec §1.7 / §4.7: VFIO_PRECOPY_INFO_REINIT
    }

    [Fact]
    public void VfioDmaLoggingControl_Offsets_0_8_12_16_spec_1_7()
    {
        var buf = Filled(VfioDmaLoggingControl.Size + 4);
        var v = new VfioDmaLoggingControl(0x1000000000001000, 0x22222222, 0x33333333, 0x4444444444444440);
        v.Encode(buf);
        Assert.Equal(0x1000000000001000ul, BinaryPrimitives.ReadUInt64LittleEndian(buf.AsSpan(0)));
        Assert.Equal(0x22222222u, BinaryPrimitives.ReadUInt32LittleEndian(buf.AsSpan(8)));
        Assert.Equal(0x33333333u, BinaryPrimitives.ReadUInt32LittleEndian(buf.AsSpan(12)));
        Assert.Equal(0x4444444444444440ul, BinaryPrimitives.ReadUInt64LittleEndian(buf.AsSpan(16)));
        AssertUntouched(buf, 24);
        Assert.Equal(v, VfioDmaLoggingControl.Decode(buf));
    }

    [Fact]
    public void VfioDmaLoggingRange_Offsets_0_8_spec_1_7()
    {
        var buf = Filled(VfioDmaLoggingRange.Size + 4);
        var v = new VfioDmaLoggingRange(0x1111111111111000, 0x2222222222222000);
        v.Encode(buf);
        Assert.Equal(0x1111111111111000ul, BinaryPrimitives.ReadUInt64LittleEndian(buf.AsSpan(0)));
        Assert.Equal(0x2222222222222000ul, BinaryPrimitives.ReadUInt64LittleEndian(buf.AsSpan(8)));
        AssertUntouched(buf, 16);
        Assert.Equal(v, VfioDmaLoggingRange.Decode(buf));
    }

    [Fact]
    public void VfioDmaLoggingReport_Offsets_0_8_16_24_spec_1_7()
    {
        var buf = Filled(VfioDmaLoggingReport.Size + 4);
        var v = new VfioDmaLoggingReport(0x1111111111111000, 0x2222222222222000, 0x3333333333333000, 0x4444444444444448);
        v.Encode(buf);
        Assert.Equal(0x1111111111111000ul, BinaryPrimitives.ReadUInt64LittleEndian(buf.AsSpan(0)));
        Assert.Equal(0x2222222222222000ul, BinaryPrimitives.ReadUInt64LittleEndian(buf.AsSpan(8)));
        Assert.Equal(0x3333333333333000ul, BinaryPrimitives.ReadUInt64LittleEndian(buf.AsSpan(16)));
        Assert.Equal(0x4444444444444448ul, BinaryPrimitives.ReadUInt64LittleEndian(buf.AsSpan(24)));
        AssertUntouched(buf, 32);
        Assert.Equal(v, VfioDmaLoggingReport.Decode(buf));
    }

    [Fact]
    public void VfioDeviceFeatureMigDataSize_StopCopyLengthAt0_spec_1_7()
    {
        var buf = Filled(VfioDeviceFeatureMigDataSize.Size + 4);
        var v = new VfioDeviceFeatureMigDataSize(0x0807060504030201);
        v.Encode(buf);
        Assert.Equal(new byte[] { 1, 2, 3, 4, 5, 6, 7, 8 }, buf[..8]);
        AssertUntouched(buf, 8);
        Assert.Equal(v, VfioDeviceFeatureMigDataSize.Decode(buf));
    }

    [Theory] // spec §5.3: ((length − 1) / page_size) / 64 + 1 words
    [InlineData(4096ul, 4096ul, 1ul)]
    [InlineData(64ul * 4096, 4096ul, 1ul)]
    [InlineData(64ul * 4096 + 1, 4096ul, 2ul)]
    [InlineData(65ul * 4096, 4096ul, 2ul)]
    [InlineData(1ul << 30, 4096ul, 4096ul)]
    [InlineData(0ul, 4096ul, 0ul)]
    public void BitmapWords_FollowsTheKernelFormula_spec_5_3(ulong length, ulong pageSize, ulong words)
        => Assert.Equal(words, VfioDmaLoggingReport.BitmapWords(length, pageSize));

    [Fact]
    public void BitmapWords_WithPageSizeZero_IsAnArgumentError_NotADivideByZero()
        => Assert.Throws<ArgumentOutOfRangeException>(() => VfioDmaLoggingReport.BitmapWords(4096, 0));

    [Fact]
    public void FeatureFlagBits_MatchSpec_1_4()
    {
        Assert.Equal(0x0000FFFFu, (uint)VfioDeviceFeatureFlags.Mask);
        Assert.Equal(0x00010000u, (uint)VfioDeviceFeatureFlags.Get);
        Assert.Equal(0x00020000u, (uint)VfioDeviceFeatureFlags.Set);
        Assert.Equal(0x00040000u, (uint)VfioDeviceFeatureFlags.Probe);
    }

    [Fact]
    public void FeatureIds_MatchSpec_1_3()
    {
        var expected = new (VfioDeviceFeatureId Id, int Value)[]
        {
            (VfioDeviceFeatureId.PciVfToken, 0), (VfioDeviceFeatureId.Migration, 1), (VfioDeviceFeatureId.MigDeviceState, 2),
            (VfioDeviceFeatureId.LowPowerEntry, 3), (VfioDeviceFeatureId.LowPowerEntryWithWakeup, 4), (VfioDeviceFeatureId.LowPowerExit, 5),
            (VfioDeviceFeatureId.DmaLoggingStart, 6), (VfioDeviceFeatureId.DmaLoggingStop, 7), (VfioDeviceFeatureId.DmaLoggingReport, 8),
            (VfioDeviceFeatureId.MigDataSize, 9), (VfioDeviceFeatureId.BusMaster, 10), (VfioDeviceFeatureId.DmaBuf, 11),
            (VfioDeviceFeatureId.MigPrecopyInfoV2, 12),
        };
        foreach (var (id, value) in expected)
            Assert.Equal(value, (int)id);
        // spec §1.3 / §10: id 13 is contested upstream and must not be assigned.
        Assert.False(Enum.IsDefined((VfioDeviceFeatureId)13));
        Assert.Equal(expected.Length, Enum.GetValues<VfioDeviceFeatureId>().Length);
    }

    private static byte[] Filled(int length)
    {
        var b = new byte[length];
        Array.Fill(b, (byte)0xCC);
        return b;
    }

    private static void AssertUntouched(byte[] buf, int from)
    {
        for (int i = from; i < buf.Length; i++)
            Assert.Equal(0xCC, buf[i]);
    }
}
