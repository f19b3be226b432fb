using Vfio.Uapi;

namespace Vfio.Conformance;

// Group dirty-logging: the core's START/REPORT validation and read-and-clear (spec §5).
internal sealed partial class CheckRun
{
    private const ulong LogPage = 4096;
    private const ulong LogLength = 1 << 20;

    private async Task RunDirtyLoggingAsync(CancellationToken ct)
    {
        Current("dirty.zero-ranges");
        // DMA_LOGGING_STOP is harmless and, like every logging feature, ENOTTY without logging support.
        var probe = await TryAsync(() => _device.StopDmaLoggingAsync(ct)).ConfigureAwait(false);
        if (probe.Errno is Errno.ENOTTY or Errno.EOPNOTSUPP)
        {
            SkipGroup(ConformanceGroups.DirtyLogging, $"the device has no DMA logging (DMA_LOGGING_STOP: {VfioException.NameOf(probe.Errno)})");
            return;
        }
        // Over vfio-user the device logs (and reports) only DMA it can reach: map the logged range first, while RUNNING
        // (libvfio-user refuses DMA_MAP in STOP). The kernel path logs through the IOMMU mapping it already has.
        IAsyncDisposable? mapping = null;
        if (_raw is not null)
        {
            try
            {
                mapping = await _raw.MapDmaAsync(0, LogLength, ct).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                Observe(Outcome.From(ex));
                SkipGroup(ConformanceGroups.DirtyLogging, $"DMA_MAP of 0x0+{Hex(LogLength)} (a memfd) failed: {Describe(ex)}; logging cannot be exercised without mapped memory");
                return;
            }
        }
        try
        {
            await RunDirtyLoggingRulesAsync(ct).ConfigureAwait(false);
        }
        finally
        {
            if (mapping is not null && _death is null)
            {
                await LeaveAsync(_device, ct).ConfigureAwait(false);
                await TryAsync(() => mapping.DisposeAsync()).ConfigureAwait(false);
            }
        }
    }

    private async Task RunDirtyLoggingRulesAsync(CancellationToken ct)
    {

        if (_device is ITransportConventions { DmaLoggingZeroRangesMeansAll: true })
            await ExpectZeroRangesMeanAllAsync(ct).ConfigureAwait(false);
        else
            await ExpectStartErrorAsync("dirty.zero-ranges", [], LogPage, Errno.EINVAL, "0 ranges", ct).ConfigureAwait(false);
        var many = Enumerable.Range(0, 257).Select(i => new VfioDmaLoggingRange((ulong)i * 2 * LogPage, LogPage)).ToArray();
        Current("dirty.too-many-ranges");
        await ExpectStartErrorAsync("dirty.too-many-ranges", many, LogPage, Errno.E2BIG, "257 ranges", ct).ConfigureAwait(false);
        Current("dirty.misaligned");
        if (await ExpectStartErrorAsync(null, [new(0x800, LogPage)], LogPage, Errno.EINVAL, "iova 0x800 with page size 0x1000", ct).ConfigureAwait(false) is { } badIova)
            Fail("dirty.misaligned", badIova);
        else
            await ExpectStartErrorAsync("dirty.misaligned", [new(0, LogPage + 0x800)], LogPage, Errno.EINVAL, "iova 0x800 and length 0x1800 with page size 0x1000", ct).ConfigureAwait(false);
        Current("dirty.overflow");
        await ExpectStartErrorAsync("dirty.overflow", [new(0xFFFF_FFFF_FFFF_F000, 2 * LogPage)], LogPage, Errno.EOVERFLOW, "iova 0xfffffffffffff000 + 0x2000", ct).ConfigureAwait(false);
        Current("dirty.overlap");
        await ExpectStartErrorAsync("dirty.overlap", [new(0, 4 * LogPage), new(2 * LogPage, 4 * LogPage)], LogPage, Errno.EINVAL, "ranges 0x0+0x4000 and 0x2000+0x4000", ct).ConfigureAwait(false);

        // The REPORT checks need logging on.
        Current("dirty.report-page-size");
        var start = await StartAsync(LogPage, [new(0, LogLength)], ct).ConfigureAwait(false);
        if (!start.Ok)
        {
            string why = $"a valid DMA_LOGGING_START (0x0+{Hex(LogLength)}, page 0x1000) failed with {start.Describe()}";
            Fail("dirty.report-page-size", why);
            Fail("dirty.report-overflow", why);
            Fail("dirty.read-and-clear", why);
            return;
        }
        try
        {
            var small = await ReportAsync(0, LogLength, 2048, ct).ConfigureAwait(false);
            var odd = await ReportAsync(0, LogLength, 3 * LogPage, ct).ConfigureAwait(false);
            var problems = new List<string>();
            if (small.Errno != Errno.EINVAL)
                problems.Add($"page size 2048 {(small.Ok ? "was accepted" : "failed with " + small.Describe())} (expected EINVAL)");
            if (odd.Errno != Errno.EINVAL)
                problems.Add($"page size 12288 {(odd.Ok ? "was accepted" : "failed with " + odd.Describe())} (expected EINVAL)");
            if (problems.Count == 0)
                Pass("dirty.report-page-size", "page sizes 2048 and 12288: EINVAL");
            else
                Fail("dirty.report-page-size", string.Join("; ", problems));

            Current("dirty.report-overflow");
            var overflow = await ReportAsync(0xFFFF_FFFF_FFFF_F000, 2 * LogPage, LogPage, ct).ConfigureAwait(false);
            if (overflow.Errno == Errno.EOVERFLOW)
                Pass("dirty.report-overflow", "iova 0xfffffffffffff000 + 0x2000: EOVERFLOW");
            else
                Fail("dirty.report-overflow", $"iova 0xfffffffffffff000 + 0x2000 {(overflow.Ok ? "was accepted" : "failed with " + overflow.Describe())} (expected EOVERFLOW)");

            await ReadAndClearAsync(ct).ConfigureAwait(false);
        }
        finally
        {
            await TryAsync(() => _device.StopDmaLoggingAsync(ct)).ConfigureAwait(false);
            await LeaveAsync(_device, ct).ConfigureAwait(false);
        }
    }

    // vfio-user: libvfio-user's sample client starts logging with 0 ranges and expects success (vfio-user.md §6.12).
    private async Task ExpectZeroRangesMeanAllAsync(CancellationToken ct)
    {
        const string rule = "dirty.zero-ranges";
        var start = await StartAsync(LogPage, [], ct).ConfigureAwait(false);
        await TryAsync(() => _device.StopDmaLoggingAsync(ct)).ConfigureAwait(false);
        if (start.Ok)
            Pass(rule, "0 ranges accepted as \"everything\" (the vfio-user convention, not the kernel's EINVAL)");
        else
            Fail(rule, $"0 ranges failed with {start.Describe()}; over vfio-user it means \"log everything\" and must succeed");
    }

    private async Task ReadAndClearAsync(CancellationToken ct)
    {
        const string rule = "dirty.read-and-clear";
        Current(rule);
        if (_options.GenerateDeviceWrites is { } writes)
            await writes(ct).ConfigureAwait(false);
        var d = await DriveAsync(_device, Stop, ct).ConfigureAwait(false);
        if (d.Error is not null)
        {
            Unmet(rule, d);
            return;
        }
        int words = (int)VfioDmaLoggingReport.BitmapWords(LogLength, LogPage);
        var first = new ulong[words];
        var second = new ulong[words];
        var r1 = await TryAsync(() => Report(0, LogLength, LogPage, first, ct)).ConfigureAwait(false);
        var r2 = await TryAsync(() => Report(0, LogLength, LogPage, second, ct)).ConfigureAwait(false);
        long dirty = first.Sum(w => (long)ulong.PopCount(w)), again = second.Sum(w => (long)ulong.PopCount(w));
        if (r1.Errno == Errno.EOPNOTSUPP)
            Skip(rule, "cannot be checked on this kernel: DMA_LOGGING_REPORT failed with EOPNOTSUPP, which a Linux kernel built without CONFIG_IOMMUFD_DRIVER (e.g. Debian's 6.12) answers for every device, before the driver is asked; a kernel-configuration limit, not the device's fault");
        else if (!r1.Ok || !r2.Ok)
            Fail(rule, $"DMA_LOGGING_REPORT failed: {(r1.Ok ? r2.Describe() : r1.Describe())}");
        else if (again != 0)
            Fail(rule, $"the first report had {dirty} dirty pages, the second report of the same range (device stopped) still {again}");
        else if (dirty == 0)
            Pass(rule, "both reports empty (no DMA writes were generated, so clearing was not exercised)");
        else
            Pass(rule, $"first report {dirty} dirty pages, second report empty");
    }

    // Runs one START that must fail; reports under the rule (when given) or returns the problem.
    private async Task<string?> ExpectStartErrorAsync(string? rule, VfioDmaLoggingRange[] ranges, ulong pageSize, Errno expected, string what, CancellationToken ct)
    {
        await TryAsync(() => _device.StopDmaLoggingAsync(ct)).ConfigureAwait(false);
        var r = await StartAsync(pageSize, ranges, ct).ConfigureAwait(false);
        string? problem = null;
        if (r.Ok)
        {
            problem = $"{what} was accepted (expected {VfioException.NameOf(expected)})";
            await TryAsync(() => _device.StopDmaLoggingAsync(ct)).ConfigureAwait(false);
        }
        else if (r.Errno != expected)
        {
            problem = $"{what} failed with {r.Describe()} (expected {VfioException.NameOf(expected)})";
        }
        if (rule is not null)
        {
            if (problem is null)
                Pass(rule, $"{what}: {VfioException.NameOf(expected)}");
            else
                Fail(rule, problem);
        }
        return problem;
    }

    private async Task<Outcome> ReportAsync(ulong iova, ulong length, ulong pageSize, CancellationToken ct)
    {
        var bitmap = new ulong[Math.Max(1, (int)Math.Min(1 << 20, VfioDmaLoggingReport.BitmapWords(length, pageSize)))];
        return await TryAsync(() => Report(iova, length, pageSize, bitmap, ct)).ConfigureAwait(false);
    }

    // START and REPORT reach the device as given: over a transport whose client checks them itself, raw.
    private Task<Outcome> StartAsync(ulong pageSize, VfioDmaLoggingRange[] ranges, CancellationToken ct)
        => _raw is { } raw
            ? TryAsync(() => raw.StartDmaLoggingRawAsync(pageSize, ranges, ct))
            : TryAsync(async () => await _device.StartDmaLoggingAsync(pageSize, ranges, ct).ConfigureAwait(false));

    private ValueTask Report(ulong iova, ulong length, ulong pageSize, Memory<ulong> bitmap, CancellationToken ct)
        => _raw is { } raw
            ? raw.ReportDmaLoggingRawAsync(iova, length, pageSize, bitmap, ct)
            : _device.ReportDmaLoggingAsync(iova, length, pageSize, bitmap, ct);
}
