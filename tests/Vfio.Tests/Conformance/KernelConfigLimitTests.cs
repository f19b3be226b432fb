using Vfio.Conformance;
using Vfio.Migration;
using Vfio.Uapi;
using static Vfio.Tests.Conformance.ConformanceTestDevices;

namespace Vfio.Tests.Conformance;

// spec §5.3: a Linux kernel built without CONFIG_IOMMUFD_DRIVER (Debian's 6.12) validates a REPORT's page size
// and range, then fails every valid one with EOPNOTSUPP, whatever the driver: the rule names that limit and
// does not count it against the device.
public class KernelConfigLimitTests
{
    [Fact]
    public async Task ReportEopnotsupp_SkipsReadAndClear_NamingTheKernelConfiguration_spec_5_3()
    {
        using var sample = NewSample();
        await using var device = new StubWalkerDevice(new InProcessMigrationDevice(sample, "sample:test"));
        var report = await ConformanceChecker.RunAsync(device, Options(sample, ConformanceGroups.DirtyLogging), TestContext.Current.CancellationToken);

        var rule = report.Find("dirty.read-and-clear");
        Assert.NotNull(rule);
        Assert.Equal(ConformanceVerdict.Skip, rule.Verdict);
        Assert.Contains("CONFIG_IOMMUFD_DRIVER", rule.Detail, StringComparison.Ordinal);
        Assert.Contains("not the device's fault", rule.Detail, StringComparison.Ordinal);
        // The core's own validation still runs before the stub, so those rules are checked as usual.
        Assert.Equal(ConformanceVerdict.Pass, report.Find("dirty.report-page-size")?.Verdict);
        Assert.Equal(ConformanceVerdict.Pass, report.Find("dirty.report-overflow")?.Verdict);
        Assert.Equal(0, report.Failed);
    }

    [Fact]
    public async Task ReportFailingWithAnotherErrno_StillFailsReadAndClear_spec_5_3()
    {
        using var sample = NewSample();
        await using var device = new StubWalkerDevice(new InProcessMigrationDevice(sample, "sample:test"), Errno.EIO);
        var report = await ConformanceChecker.RunAsync(device, Options(sample, ConformanceGroups.DirtyLogging), TestContext.Current.CancellationToken);

        Assert.Equal(ConformanceVerdict.Fail, report.Find("dirty.read-and-clear")?.Verdict);
    }

    // Validates like the kernel core, then fails every valid REPORT with the given errno.
    private sealed class StubWalkerDevice(IVfioMigrationDevice inner, Errno errno = Errno.EOPNOTSUPP) : DelegatingDevice(inner)
    {
        public override ValueTask ReportDmaLoggingAsync(ulong iova, ulong length, ulong pageSize, Memory<ulong> bitmap, CancellationToken cancellationToken = default)
        {
            if (pageSize < 4096 || !ulong.IsPow2(pageSize) || iova + length < iova)
                return base.ReportDmaLoggingAsync(iova, length, pageSize, bitmap, cancellationToken);
            throw new VfioException(errno, "DMA_LOGGING_REPORT", "stub bitmap walker");
        }
    }
}
