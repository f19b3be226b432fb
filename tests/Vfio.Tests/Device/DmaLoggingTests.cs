using Vfio.Device;
using Vfio.Migration;
using Vfio.Sample;
using Vfio.Tests.TestSupport;
using Vfio.Uapi;

namespace Vfio.Tests.Device;

// spec §5: DMA logging START / STOP / REPORT, the core's validation order and the read-and-clear semantics.
public class DmaLoggingTests
{
    private static SampleDevice Sample(long size = 1 << 20, int pageSize = 4096)
        => new(new SampleDeviceOptions { SizeBytes = size, PageSize = pageSize, Capabilities = (VfioMigrationFlags)0x7 });

    private static VfioDmaLoggingRange[] Ranges(params (ulong Iova, ulong Length)[] r) => [.. r.Select(x => new VfioDmaLoggingRange(x.Iova, x.Length))];

    private static Errno StartErrno(ulong pageSize, IReadOnlyList<VfioDmaLoggingRange> ranges)
    {
        using var d = Sample();
        return Assert.Throws<VfioException>(() => d.StartDmaLogging(pageSize, ranges)).Errno;
    }

    [Fact]
    public void Start_ZeroRanges_IsEinval_spec_5_1()
        => Assert.Equal(Errno.EINVAL, StartErrno(4096, []));

    [Fact]
    public void Start_257Ranges_IsE2big_256AreAccepted_spec_5_1()
    {
        var ranges = Enumerable.Range(0, 257).Select(i => new VfioDmaLoggingRange((ulong)i * 8192, 4096)).ToArray();
        Assert.Equal(Errno.E2BIG, StartErrno(4096, ranges));
        Assert.Equal(256, DmaLoggingValidator.MaxRanges);
        using var d = Sample();
        Assert.Equal(4096ul, d.StartDmaLogging(4096, ranges[..256]));
    }

    [Fact]
    public void Start_E2big_IsCheckedBeforeRangeContents_spec_5_1()
    {
        // 257 ranges that are also misaligned: the count check comes first.
        var ranges = Enumerable.Range(0, 257).Select(i => new VfioDmaLoggingRange((ulong)i * 8192 + 1, 4096)).ToArray();
        Assert.Equal(Errno.E2BIG, StartErrno(4096, ranges));
    }

    [Theory]
    [InlineData(4096ul, 1ul, 4096ul)]
    [InlineData(4096ul, 0ul, 4095ul)]
    [InlineData(4096ul, 2048ul, 4096ul)]
    public void Start_MisalignedRange_IsEinval_spec_5_1(ulong pageSize, ulong iova, ulong length)
        => Assert.Equal(Errno.EINVAL, StartErrno(pageSize, Ranges((iova, length))));

    [Fact]
    public void Start_PageSizeZero_AcceptsOnlyZeroIovaAndLength_spec_5_1()
    {
        Assert.Equal(Errno.EINVAL, StartErrno(0, Ranges((4096, 0))));
        Assert.Equal(Errno.EINVAL, StartErrno(0, Ranges((0, 4096))));
        Assert.Single(DmaLoggingValidator.ValidateStart(0, Ranges((0, 0))));
    }

    [Fact]
    public void Start_NonPowerOfTwoPageSize_UsesTheDegenerateMaskTest_spec_5_1()
    {
        // mask = 0x2FFF: 0x3000 has bit 12 and 13 set → 0x3000 & 0x2FFF = 0x2000 ≠ 0 → EINVAL even though 0x3000 is a multiple of 0x3000.
        Assert.Equal(Errno.EINVAL, StartErrno(0x3000, Ranges((0x3000, 0x3000))));
        // 0x4000 & 0x2FFF = 0 → accepted although it is not a multiple of 0x3000.
        Assert.Single(DmaLoggingValidator.ValidateStart(0x3000, Ranges((0x4000, 0x4000))));
    }

    [Fact]
    public void Start_IovaPlusLengthOverflow_IsEoverflow_spec_5_1()
    {
        Assert.Equal(Errno.EOVERFLOW, StartErrno(4096, Ranges((ulong.MaxValue - 4095, 8192))));
        Assert.Equal(Errno.EOVERFLOW, StartErrno(4096, Ranges((ulong.MaxValue - 4095, 4096)))); // exactly 2^64 overflows too
    }

    [Fact]
    public void Start_OverlappingRanges_AreEinval_InAnyOrder_spec_5_1()
    {
        Assert.Equal(Errno.EINVAL, StartErrno(4096, Ranges((0, 8192), (4096, 4096))));
        Assert.Equal(Errno.EINVAL, StartErrno(4096, Ranges((4096, 4096), (0, 8192))));
        Assert.Equal(Errno.EINVAL, StartErrno(4096, Ranges((0x10000, 0x1000), (0, 0x100000))));
        // Touching ranges do not overlap.
        Assert.Equal(2, DmaLoggingValidator.ValidateStart(4096, Ranges((4096, 4096), (0, 4096))).Length);
    }

    [Fact]
    public void Start_ZeroLengthRanges_FollowTheKernelsClosedIntervalTest_spec_5_1()
    {
        // Zero-length ranges are not rejected by themselves; the kernel stores [iova, iova + length − 1]
        // (wrapping), so they collide in the ways its interval tree does.
        Assert.Single(DmaLoggingValidator.ValidateStart(4096, Ranges((0x1000, 0))));
        Assert.Equal(2, DmaLoggingValidator.ValidateStart(4096, Ranges((0x1000, 0), (0x1000, 0x1000))).Length);
        Assert.Equal(2, DmaLoggingValidator.ValidateStart(4096, Ranges((0x1000, 0), (0x1000, 0))).Length);
        // [0x2000, 0x1FFF] intersects a later range that spans across 0x2000 …
        Assert.Equal(Errno.EINVAL, StartErrno(4096, Ranges((0x2000, 0), (0x1000, 0x2000))));
        // … and a zero-length range inside an earlier range intersects it.
        Assert.Equal(Errno.EINVAL, StartErrno(4096, Ranges((0x1000, 0x2000), (0x2000, 0))));
        // iova 0, length 0 wraps to [0, 2^64 − 1]: every other range collides with it.
        Assert.Equal(Errno.EINVAL, StartErrno(4096, Ranges((0, 0), (0x100000, 0x1000))));
        Assert.Equal(Errno.EINVAL, StartErrno(4096, Ranges((0x100000, 0x1000), (0, 0))));
    }

    [Fact]
    public void Start_PerRangeChecks_RunInArrayOrder_spec_5_1()
    {
        // First range overflows, second is misaligned: the first failing range decides.
        Assert.Equal(Errno.EOVERFLOW, StartErrno(4096, Ranges((ulong.MaxValue - 4095, 8192), (1, 4096))));
        Assert.Equal(Errno.EINVAL, StartErrno(4096, Ranges((1, 4096), (ulong.MaxValue - 4095, 8192))));
    }

    [Fact]
    public void Start_ReturnsSortedRanges_spec_5_1()
    {
        var sorted = DmaLoggingValidator.ValidateStart(4096, Ranges((0x3000, 0x1000), (0x1000, 0x1000), (0x2000, 0x1000)));
        Assert.Equal(new ulong[] { 0x1000, 0x2000, 0x3000 }, sorted.Select(r => r.Iova));
    }

    [Fact]
    public void AllLoggingCalls_AreEnotty_WithoutSupport_CheckedFirst_spec_5()
    {
        using var d = new RecordingDevice((VfioMigrationFlags)0x7);
        Assert.False(d.SupportsDmaLogging);
        Assert.Equal(Errno.ENOTTY, Assert.Throws<VfioException>(() => d.StartDmaLogging(4096, [])).Errno); // not EINVAL
        Assert.Equal(Errno.ENOTTY, Assert.Throws<VfioException>(d.StopDmaLogging).Errno);
        Assert.Equal(Errno.ENOTTY, Assert.Throws<VfioException>(() => d.ReportDmaLogging(0, 4096, 1, new ulong[1])).Errno);
    }

    [Theory]
    [InlineData(0ul)]
    [InlineData(512ul)]
    [InlineData(2048ul)]
    [InlineData(4095ul)]
    [InlineData(6144ul)]
    [InlineData(12288ul)]
    public void Report_PageSizeBelow4096OrNotPowerOfTwo_IsEinval_spec_5_3(ulong pageSize)
    {
        using var d = Sample();
        d.StartDmaLogging(4096, Ranges((0, 1 << 20)));
        Assert.Equal(Errno.EINVAL, Assert.Throws<VfioException>(() => d.ReportDmaLogging(0, 1 << 20, pageSize, new ulong[1024])).Errno);
    }

    [Fact]
    public void Report_IovaPlusLengthOverflow_IsEoverflow_spec_5_3()
    {
        using var d = Sample();
        d.StartDmaLogging(4096, Ranges((0, 1 << 20)));
        Assert.Equal(Errno.EOVERFLOW, Assert.Throws<VfioException>(() => d.ReportDmaLogging(ulong.MaxValue - 4095, 8192, 4096, new ulong[1])).Errno);
    }

    [Fact]
    public void Report_BitmapTooSmall_IsEfault_spec_5_3()
    {
        using var d = Sample();
        d.StartDmaLogging(4096, Ranges((0, 1 << 20)));
        // 256 pages need 4 words.
        Assert.Equal(Errno.EFAULT, Assert.Throws<VfioException>(() => d.ReportDmaLogging(0, 1 << 20, 4096, new ulong[3])).Errno);
        d.ReportDmaLogging(0, 1 << 20, 4096, new ulong[4]);
    }

    [Fact]
    public void Report_SetsBitsForWrittenPages_ThenClears_AndNeverClearsUserBits_spec_5_3()
    {
        using var d = Sample();
        Assert.Equal(4096ul, d.StartDmaLogging(4096, Ranges((0, 1 << 20))));
        d.WriteState(3 * 4096 + 10, [1, 2, 3]);
        d.WriteState(64 * 4096, [4]);
        d.WriteState(70 * 4096 - 1, [5, 6]); // straddles pages 69 and 70
        var bitmap = new ulong[4];
        d.ReportDmaLogging(0, 1 << 20, 4096, bitmap);
        Assert.Equal((1ul << 3), bitmap[0]);
        Assert.Equal((1ul << 0) | (1ul << 5) | (1ul << 6), bitmap[1]);
        Assert.Equal(0ul, bitmap[2] | bitmap[3]);

        // Read-and-clear: a second report adds nothing; the bits already in the user's buffer stay set.
        var user = new ulong[] { 0xF0F0, 0, 0, 1ul << 63 };
        d.ReportDmaLogging(0, 1 << 20, 4096, user);
        Assert.Equal(new ulong[] { 0xF0F0, 0, 0, 1ul << 63 }, user);
    }

    [Fact]
    public void Report_OnlyClearsTheReportedRange_spec_5_3()
    {
        using var d = Sample();
        d.StartDmaLogging(4096, Ranges((0, 1 << 20)));
        d.WriteState(1 * 4096, [1]);
        d.WriteState(200 * 4096, [1]);
        var low = new ulong[1];
        d.ReportDmaLogging(0, 64 * 4096, 4096, low);
        Assert.Equal(1ul << 1, low[0]);
        var all = new ulong[4];
        d.ReportDmaLogging(0, 1 << 20, 4096, all);
        Assert.Equal(new ulong[] { 0, 0, 0, 1ul << (200 - 192) }, all);
    }

    [Fact]
    public void Report_PageSizeSmallerThanTheTrackingGranule_SetsSeveralBits_spec_5_3()
    {
        using var d = Sample(size: 1 << 20, pageSize: 16384);
        Assert.Equal(16384ul, d.StartDmaLogging(4096, Ranges((0, 1 << 20)))); // the device reports its granule
        d.WriteState(2 * 16384 + 5, [9]);
        var bitmap = new ulong[4];
        d.ReportDmaLogging(0, 1 << 20, 4096, bitmap);
        // Device page 2 = report pages 8..11.
        Assert.Equal(0xFul << 8, bitmap[0]);
        Assert.Equal(0ul, bitmap[1] | bitmap[2] | bitmap[3]);
    }

    [Fact]
    public void Report_PageSizeLargerThanTheGranule_FoldsPagesIntoOneBit_spec_5_3()
    {
        using var d = Sample();
        d.StartDmaLogging(4096, Ranges((0, 1 << 20)));
        d.WriteState(5 * 4096, [1]);
        d.WriteState(6 * 4096, [1]);
        var bitmap = new ulong[1];
        d.ReportDmaLogging(0, 1 << 20, 65536, bitmap);
        Assert.Equal(1ul, bitmap[0]);
    }

    [Fact]
    public void WritesOutsideTheLoggedRanges_AreNotReported_spec_5_1()
    {
        using var d = Sample();
        d.StartDmaLogging(4096, Ranges((0x10000, 0x10000)));
        d.WriteState(0, [1]);             // page 0: not logged
        d.WriteState(0x10000 + 4096, [1]); // page 17: logged
        var bitmap = new ulong[4];
        d.ReportDmaLogging(0, 1 << 20, 4096, bitmap);
        Assert.Equal(1ul << 17, bitmap[0]);
    }

    [Fact]
    public void SecondStart_IsEinval_StopThenStartWorks_spec_5_1_and_5_2()
    {
        using var d = Sample();
        d.StartDmaLogging(4096, Ranges((0, 4096)));
        Assert.Equal(Errno.EINVAL, Assert.Throws<VfioException>(() => d.StartDmaLogging(4096, Ranges((0, 4096)))).Errno);
        d.StopDmaLogging();
        d.StartDmaLogging(4096, Ranges((0, 4096)));
    }

    [Fact]
    public void Report_BeforeStart_IsEinval_spec_5_3()
    {
        using var d = Sample();
        Assert.Equal(Errno.EINVAL, Assert.Throws<VfioException>(() => d.ReportDmaLogging(0, 4096, 4096, new ulong[1])).Errno);
    }

    [Fact]
    public void Logging_IsIndependentOfTheMigrationState_spec_5()
    {
        using var d = Sample();
        d.StartDmaLogging(4096, Ranges((0, 1 << 20)));
        d.SetState(VfioMigrationState.Stop);
        d.WriteState(4096, [1]);
        d.Reset();
        var bitmap = new ulong[4];
        d.ReportDmaLogging(0, 1 << 20, 4096, bitmap); // reset does not stop logging (spec §3.4)
        Assert.Equal(1ul << 1, bitmap[0]);
    }
}
