using Vfio.Migration;
using Vfio.Uapi;

namespace Vfio.Tests.Uapi;

// spec §1.8: the complete VFIO_DEVICE_FEATURE call buffers, byte for byte.
public class FeatureCallGoldenTests
{
    [Fact]
    public void SetStopCopy_IsTheSpecExample_spec_1_8()
        => Assert.Equal(Hex("10 00 00 00 02 00 02 00 03 00 00 00 FF FF FF FF"), VfioFeatureCall.SetState(VfioMigrationState.StopCopy));

    [Theory] // spec §1.8 "set state S": argsz 16, flags 0x00020002, device_state = S, data_fd = −1
    [InlineData(VfioMigrationState.Stop, "10 00 00 00 02 00 02 00 01 00 00 00 FF FF FF FF")]
    [InlineData(VfioMigrationState.Running, "10 00 00 00 02 00 02 00 02 00 00 00 FF FF FF FF")]
    [InlineData(VfioMigrationState.Resuming, "10 00 00 00 02 00 02 00 04 00 00 00 FF FF FF FF")]
    [InlineData(VfioMigrationState.RunningP2P, "10 00 00 00 02 00 02 00 05 00 00 00 FF FF FF FF")]
    [InlineData(VfioMigrationState.PreCopy, "10 00 00 00 02 00 02 00 06 00 00 00 FF FF FF FF")]
    [InlineData(VfioMigrationState.PreCopyP2P, "10 00 00 00 02 00 02 00 07 00 00 00 FF FF FF FF")]
    public void SetState_EncodesStateAndMinusOneFd_spec_1_8(VfioMigrationState state, string hex)
        => Assert.Equal(Hex(hex), VfioFeatureCall.SetState(state));

    [Fact]
    public void ProbeMigration_Argsz8_Flags00040001_spec_1_8()
        => Assert.Equal(Hex("08 00 00 00 01 00 04 00"), VfioFeatureCall.ProbeMigration());

    [Fact]
    public void GetMigration_Argsz16_Flags00010001_spec_1_8()
        => Assert.Equal(Hex("10 00 00 00 01 00 01 00 00 00 00 00 00 00 00 00"), VfioFeatureCall.GetMigration());

    [Fact]
    public void GetState_Argsz16_Flags00010002_spec_1_8()
        => Assert.Equal(Hex("10 00 00 00 02 00 01 00 00 00 00 00 00 00 00 00"), VfioFeatureCall.GetState());

    [Fact]
    public void GetMigDataSize_Argsz16_Flags00010009_spec_1_8()
        => Assert.Equal(Hex("10 00 00 00 09 00 01 00 00 00 00 00 00 00 00 00"), VfioFeatureCall.GetMigDataSize());

    [Fact]
    public void OptInPrecopyInfoV2_Argsz8_Flags0002000C_spec_1_8()
        => Assert.Equal(Hex("08 00 00 00 0C 00 02 00"), VfioFeatureCall.OptInPrecopyInfoV2());

    [Fact]
    public void DmaLoggingStart_Argsz32_Flags00020006_ControlPayload_spec_1_8()
        => Assert.Equal(
            Hex("20 00 00 00 06 00 02 00" +
                " 00 10 00 00 00 00 00 00" + // page_size 4096
                " 03 00 00 00 00 00 00 00" + // num_ranges 3, __reserved 0
                " 88 77 66 55 44 33 22 11"), // ranges pointer
            VfioFeatureCall.DmaLoggingStart(4096, 3, 0x1122334455667788));

    [Fact]
    public void DmaLoggingStop_Argsz8_Flags00020007_spec_1_8()
        => Assert.Equal(Hex("08 00 00 00 07 00 02 00"), VfioFeatureCall.DmaLoggingStop());

    [Fact]
    public void DmaLoggingReport_Argsz40_Flags00010008_ReportPayload_spec_1_8()
        => Assert.Equal(
            Hex("28 00 00 00 08 00 01 00" +
                " 00 00 10 00 00 00 00 00" + // iova 1 MiB
                " 00 00 00 40 00 00 00 00" + // length 1 GiB
                " 00 10 00 00 00 00 00 00" + // page_size 4096
                " F0 DE BC 9A 78 56 34 12"), // bitmap pointer
            VfioFeatureCall.DmaLoggingReport(1 << 20, 1 << 30, 4096, 0x123456789ABCDEF0));

    [Fact]
    public void Create_ArgszIsHeaderPlusPayload_spec_1_8()
    {
        var b = VfioFeatureCall.Create(VfioDeviceFeatureId.Migration, VfioDeviceFeatureFlags.Get | VfioDeviceFeatureFlags.Probe, 100);
        Assert.Equal(108, b.Length);
        var h = VfioDeviceFeature.Decode(b);
        Assert.Equal(108u, h.Argsz);
        Assert.Equal(0x00050001u, h.Flags);
    }

    private static byte[] Hex(string text) => Convert.FromHexString(text.Replace(" ", "", StringComparison.Ordinal));
}
